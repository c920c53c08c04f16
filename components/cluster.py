"""The EKS control plane (pulumi-eks): access entries, KMS for secrets, the control-plane log group, and API access for deployers."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_eks as eks

import naming
from components.tags import merge_tags
from config import PlatformConfig

ADMIN_POLICY = "AmazonEKSClusterAdminPolicy"
API_PORT = 443


def _partition(principal_arn: str) -> str:
    # The principal's partition is the cluster's: arn:<partition>:iam::<account>:role/...
    return principal_arn.split(":")[1]


def _entry_key(principal_arn: str) -> str:
    # Keyed by the principal, not its list position, so reordering the config does not replace entries.
    return principal_arn.split(":", 5)[5].replace("/", "-")


# pulumi-eks creates the cluster with bootstrapClusterCreatorAdminPermissions=true (nodejs/eks/cluster/cluster.ts: "It is
# required for this component because it deploys charts"), so EKS gives the identity that creates it an access entry with
# cluster admin. A second entry for that principal fails CreateAccessEntry with ResourceInUseException (409), so the
# creator is recorded on the cluster under this tag and gets no entry from simfleet, whatever lists name it.
CREATOR_TAG = "simfleet:cluster-creator"


def iam_principal(caller_arn: str) -> str:
    """The IAM role or user behind a caller ARN: an STS assumed-role session (`arn:aws:sts::<account>:assumed-role/
    <role>/<session>`) becomes `arn:aws:iam::<account>:role/<role>` (its path, if any, is not in the session ARN)."""
    parts = caller_arn.split(":", 5)
    if len(parts) == 6 and parts[2] == "sts" and parts[5].startswith("assumed-role/"):
        role = parts[5].split("/")[1]
        return f"arn:{parts[1]}:iam::{parts[4]}:role/{role}"
    return caller_arn


def _identity(arn: str) -> tuple[str, ...]:
    # IAM names are unique per account whatever the path, so (partition, account, kind, name) names one principal.
    parts = iam_principal(arn).split(":", 5)
    kind, _, path = parts[5].partition("/") if len(parts) == 6 else ("", "", arn)
    return (parts[1], parts[4], kind, path.rsplit("/", 1)[-1]) if len(parts) == 6 else (arn,)


def same_principal(a: str, b: str) -> bool:
    return _identity(a) == _identity(b)


def cluster_creator(existing_tags: Mapping[str, str] | None, caller_arn: str) -> str | None:
    """Who holds EKS's creator entry: the tag recorded on an existing cluster (None when a cluster made before simfleet
    recorded it has none), or, for a cluster this `pulumi up` creates, the caller."""
    if existing_tags is not None:
        return existing_tags.get(CREATOR_TAG)
    return iam_principal(caller_arn)


def access_entries(
    cluster_admins: Sequence[str],
    run_operators: Sequence[str],
    deploy_roles: Sequence[str] = (),
    creator: str | None = None,
) -> dict[str, eks.AccessEntryArgs]:
    """One access entry per IAM principal (EKS allows only one): cluster admin for admins and deploy roles, the
    run-operators group for run operators. The cluster's creator is left out: EKS gave it an admin entry of its own."""
    admins = [*deploy_roles, *cluster_admins]
    entries: dict[str, eks.AccessEntryArgs] = {}
    for arn in dict.fromkeys([*admins, *run_operators]):
        if creator is not None and same_principal(arn, creator):
            continue
        policies: dict[str, eks.AccessPolicyAssociationArgs] = {}
        if arn in admins:
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


def control_plane_logs_key_policy(
    partition: str, account_id: str, region: str, logs_principal: str, log_group_name: str
) -> dict[str, Any]:
    """Key policy of the key that encrypts the control-plane log group.

    CloudWatch Logs user guide, "Encrypt log data in CloudWatch Logs using AWS KMS", step 2: the regional logs
    service principal may use the key only for this log group (the kms:EncryptionContext:aws:logs:arn condition).
    The account statement is KMS's default key policy, which leaves the key's administration to IAM policies;
    without it nobody could manage or delete the key.
    """
    log_group_arn = f"arn:{partition}:logs:{region}:{account_id}:log-group:{log_group_name}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AccountAdministersTheKey",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Sid": "CloudWatchLogsEncryptsThisLogGroup",
                "Effect": "Allow",
                "Principal": {"Service": logs_principal},
                "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
                "Resource": "*",
                "Condition": {"ArnEquals": {"kms:EncryptionContext:aws:logs:arn": log_group_arn}},
            },
        ],
    }


def _rule_key(source: str) -> str:
    # Rules are named after their source, so adding or reordering sources replaces nothing else.
    return re.sub(r"[^a-z0-9-]", "-", source.lower())


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
    # EKS refuses DeleteCluster while this is on; __main__ sets it for prod stacks. It also protects the
    # control-plane log group (the audit trail) from deletion.
    deletion_protection: bool = False
    region: str = field(kw_only=True)
    # platform.controlPlaneLogRetentionDays, resolved per stack by config/ (StackConfig).
    log_retention_days: int = field(kw_only=True)
    # The Network's deployer security group: admitted to the API endpoint on 443 besides the nodes.
    deployer_security_group_id: pulumi.Input[str] | None = field(default=None, kw_only=True)
    # KMS-encrypt the control-plane log group with its own key; __main__ sets it for prod stacks.
    encrypt_control_plane_logs: bool = field(default=False, kw_only=True)
    # The principal EKS gave the creator's admin entry (cluster_creator): recorded as a cluster tag, given no entry here.
    creator: str | None = field(default=None, kw_only=True)


class Cluster(pulumi.ComponentResource):
    eks_cluster_name: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    certificate_authority: pulumi.Output[str]
    kubeconfig_json: pulumi.Output[str]
    oidc_provider_arn: pulumi.Output[str]
    oidc_provider_url: pulumi.Output[str]
    cluster_security_group_id: pulumi.Output[str]
    node_security_group_id: pulumi.Output[str]
    control_plane_log_group_name: pulumi.Output[str]

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

        log_group = self._control_plane_log_group(name, args)

        endpoint = platform.endpoint
        cluster = eks.Cluster(
            f"{name}-eks",
            # Taken from the log group's output so the cluster is created only after the group exists: EKS then
            # writes into it instead of creating its own, which never expires. (depends_on on a remote component
            # is not guaranteed to hold back its children; a data dependency is.)
            name=log_group.name.apply(lambda _: args.cluster_name),
            version=platform.kubernetes_version,
            vpc_id=args.vpc_id,
            public_subnet_ids=args.public_subnet_ids,
            private_subnet_ids=args.private_subnet_ids,
            # Node groups are managed by components/nodegroups.py (launch templates, taints, scale-from-zero).
            skip_default_node_group=True,
            node_associate_public_ip_address=False,
            create_oidc_provider=True,  # IRSA for add-ons and runs
            authentication_mode=eks.AuthenticationMode.API,
            access_entries=access_entries(
                platform.cluster_admins, platform.run_operators, platform.deploy_roles, creator=args.creator
            ),
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
            cluster_tags=merge_tags(args.tags, {CREATOR_TAG: args.creator} if args.creator else {}, name=args.cluster_name),
            opts=child,
        )

        self._deployer_access(name, args, cluster.cluster_security_group_id)

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
        self.cluster_security_group_id = cluster.cluster_security_group_id
        # The security group the managed nodes carry. It is not pulumi-eks's `clusterSecurityGroupId` (that one sits only
        # on the control plane's interfaces) but the one EKS itself creates (eks-cluster-sg-<cluster>-<id>), which EKS
        # puts on every managed node whose launch template names no security group, as ours do (EKS user guide,
        # sec-group-reqs: "Network interfaces of the nodes in any managed node group"). Read back from EKS by name,
        # which also waits for the cluster.
        described = aws.eks.get_cluster_output(name=self.eks_cluster_name, opts=pulumi.InvokeOutputOptions(parent=self))
        self.node_security_group_id = described.vpc_config.apply(lambda vpc: str(vpc.cluster_security_group_id))
        self.control_plane_log_group_name = log_group.name
        self.register_outputs(
            {
                "eksClusterName": self.eks_cluster_name,
                "endpoint": self.endpoint,
                "certificateAuthority": self.certificate_authority,
                "oidcProviderArn": self.oidc_provider_arn,
                "oidcProviderUrl": self.oidc_provider_url,
                "clusterSecurityGroupId": self.cluster_security_group_id,
                "nodeSecurityGroupId": self.node_security_group_id,
                "controlPlaneLogGroupName": self.control_plane_log_group_name,
            }
        )

    def _control_plane_log_group(self, name: str, args: ClusterArgs) -> aws.cloudwatch.LogGroup:
        """/aws/eks/<cluster>/cluster with a retention (and, in prod, its own KMS key), created before the cluster."""
        group_name = naming.control_plane_log_group(args.cluster_name)
        child = pulumi.ResourceOptions(parent=self)
        key_arn: pulumi.Output[str] | None = None
        if args.encrypt_control_plane_logs:
            invoke = pulumi.InvokeOutputOptions(parent=self)
            partition_info = aws.get_partition_output(opts=invoke)
            partition = partition_info.partition
            account_id = aws.get_caller_identity_output(opts=invoke).account_id
            # The CloudWatch Logs key policy names the regional principal, logs.<region>.<partition DNS suffix>.
            principal = partition_info.dns_suffix.apply(lambda suffix: f"logs.{args.region}.{suffix}")
            key = aws.kms.Key(
                f"{name}-logs",
                description=f"CloudWatch Logs encryption of {group_name}",
                enable_key_rotation=True,
                # Deleting this key makes the stored audit logs unreadable; keep the longest grace period.
                deletion_window_in_days=30,
                policy=pulumi.Output.all(partition, account_id, principal).apply(
                    lambda v: json.dumps(control_plane_logs_key_policy(v[0], v[1], args.region, v[2], group_name))
                ),
                tags=merge_tags(args.tags, {}, name=f"{args.cluster_name}-logs"),
                opts=child,
            )
            aws.kms.Alias(f"{name}-logs", name=f"alias/{args.cluster_name}-logs", target_key_id=key.key_id, opts=child)
            key_arn = key.arn
        return aws.cloudwatch.LogGroup(
            f"{name}-control-plane-logs",
            name=group_name,
            retention_in_days=args.log_retention_days,
            kms_key_id=key_arn,
            deletion_protection_enabled=args.deletion_protection or None,
            tags=merge_tags(args.tags, {}, name=group_name),
            opts=child,
        )

    def _deployer_access(self, name: str, args: ClusterArgs, cluster_security_group_id: pulumi.Input[str]) -> None:
        """Ingress on 443 to the API endpoint's network interfaces for deploy runners.

        pulumi-eks attaches its cluster security group (`clusterSecurityGroupId`) to the control plane's network
        interfaces and lets only its node group in; the private endpoint answers only what this group admits. The
        rules use aws.ec2.SecurityGroupRule, the resource pulumi-eks manages that group's other rules with.
        """
        access = args.platform.endpoint.deployer_access
        sources: list[tuple[str, dict[str, Any]]] = []
        if args.deployer_security_group_id is not None:
            sources.append(("deployer", {"source_security_group_id": args.deployer_security_group_id}))
        sources += [(_rule_key(str(cidr)), {"cidr_blocks": [str(cidr)]}) for cidr in access.cidrs]
        sources += [(_rule_key(group), {"source_security_group_id": group}) for group in access.security_group_ids]
        for key, source in sources:
            aws.ec2.SecurityGroupRule(
                f"{name}-api-from-{key}",
                type="ingress",
                security_group_id=cluster_security_group_id,
                protocol="tcp",
                from_port=API_PORT,
                to_port=API_PORT,
                description=f"Kubernetes API from deployers ({key})",
                opts=pulumi.ResourceOptions(parent=self),
                **source,
            )
