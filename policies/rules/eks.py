"""EKS rules: a supported version, control-plane logs, encrypted secrets, a closed endpoint, IMDSv2 and private nodes."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import versions
from config import ALL_CONTROL_PLANE_LOGS
from policies.rules.model import Context, Resource, Rule, dependency_urns, index_by_urn, of_type
from policies.rules.props import as_list, get_path, is_map, whole_number

EKS_COMPONENT = "eks:index:Cluster"  # pulumi-eks remote component: what the offline plan (and Analyze of components) sees
EKS_CLUSTER = "aws:eks/cluster:Cluster"  # its child, which the engine also analyzes in a real preview
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
SUBNET = "aws:ec2/subnet:Subnet"
ROUTE = "aws:ec2/route:Route"
ROUTE_TABLE_ASSOCIATION = "aws:ec2/routeTableAssociation:RouteTableAssociation"
INTERNET_GATEWAY = "aws:ec2/internetGateway:InternetGateway"


@dataclass(frozen=True)
class ClusterView:
    """The settings the EKS rules check, from either the pulumi-eks component or its aws:eks child."""

    version: str | None
    log_types: tuple[str, ...]
    public_access: bool
    public_cidrs: tuple[str, ...]
    secrets_encrypted: bool
    prefix: str  # how the properties are spelled on this shape, for messages


def eks_cluster_view(resource: Resource) -> ClusterView | None:
    """Normalize `eks:index:Cluster` (component inputs) and `aws:eks/cluster:Cluster` (vpcConfig, encryptionConfig)."""
    props = resource.props
    if resource.resource_type == EKS_COMPONENT:
        public = props.get("endpointPublicAccess")
        cidrs = props.get("publicAccessCidrs")
        secrets = bool(props.get("encryptionConfigKeyArn"))
        prefix = ""
    elif resource.resource_type == EKS_CLUSTER:
        vpc = props.get("vpcConfig") or {}
        public = vpc.get("endpointPublicAccess")
        cidrs = vpc.get("publicAccessCidrs")
        configs = as_list(props.get("encryptionConfig"))  # one object in pulumi-aws 7, a list before
        secrets = any("secrets" in as_list(get_path(c, "resources")) and bool(get_path(c, "provider", "keyArn")) for c in configs)
        prefix = "vpcConfig."
    else:
        return None
    version = props.get("version")
    return ClusterView(
        version=str(version) if version is not None else None,
        log_types=tuple(str(t) for t in as_list(props.get("enabledClusterLogTypes"))),
        # Both pulumi-eks and the EKS API default the public endpoint to on.
        public_access=True if public is None else bool(public),
        public_cidrs=tuple(str(c) for c in as_list(cidrs)),
        secrets_encrypted=secrets,
        prefix=prefix,
    )


def _check_eks_version(resource: Resource, ctx: Context) -> Iterator[str]:
    view = eks_cluster_view(resource)
    if view is None:
        return
    in_support = ", ".join(sorted(v for v, r in versions.EKS_RELEASES.items() if r.end_of_standard >= ctx.today))
    if view.version is None:
        yield f"version is not set, so EKS picks one the release table cannot vouch for; set one of {in_support}"
        return
    release = versions.eks_release(view.version)
    if release is None:
        yield f"version {view.version} is not in the EKS release table (versions.py); use one of {in_support}"
    elif release.end_of_standard < ctx.today:
        yield (
            f"version {view.version} left EKS standard support on {release.end_of_standard}; extended support costs "
            f"6x the control-plane price; upgrade to one of {in_support}"
        )


def _check_eks_version_window(resource: Resource, ctx: Context) -> Iterator[str]:
    view = eks_cluster_view(resource)
    release = versions.eks_release(view.version) if view and view.version else None
    if release is None or release.end_of_standard < ctx.today:
        return
    days = (release.end_of_standard - ctx.today).days
    if days <= versions.SUPPORT_WARNING_DAYS:
        yield f"version {release.version} leaves EKS standard support on {release.end_of_standard} ({days} days); plan the upgrade"


def _check_eks_logs(resource: Resource, ctx: Context) -> Iterator[str]:
    view = eks_cluster_view(resource)
    if view is None:
        return
    required = ALL_CONTROL_PLANE_LOGS if ctx.is_prod else ("api", "audit")
    missing = [t for t in required if t not in view.log_types]
    if missing:
        scope = "prod ships all five control-plane log types" if ctx.is_prod else "api and audit logs are required"
        yield f"enabledClusterLogTypes is missing {', '.join(missing)}: {scope}"


def _check_eks_secrets(resource: Resource, ctx: Context) -> Iterator[str]:
    view = eks_cluster_view(resource)
    if view is not None and not view.secrets_encrypted:
        where = "encryptionConfigKeyArn" if resource.resource_type == EKS_COMPONENT else "encryptionConfig (resources: [secrets])"
        yield f"Kubernetes secrets are not envelope-encrypted with KMS; set {where}"


def _is_open_cidr(cidr: str) -> bool:
    try:
        return ipaddress.ip_network(cidr, strict=False).prefixlen == 0
    except ValueError:
        return False


def _check_eks_endpoint(resource: Resource, ctx: Context) -> Iterator[str]:
    view = eks_cluster_view(resource)
    if view is None or not view.public_access:
        return
    if ctx.is_prod:
        yield f"{view.prefix}endpointPublicAccess is on; prod clusters have a private endpoint only"
    if not view.public_cidrs:
        yield f"the public endpoint is on with no {view.prefix}publicAccessCidrs, which EKS opens to 0.0.0.0/0; list the networks that need access"
    open_cidrs = [c for c in view.public_cidrs if _is_open_cidr(c)]
    if open_cidrs:
        yield f"{view.prefix}publicAccessCidrs includes {', '.join(open_cidrs)}, which opens the API endpoint to the whole internet"


def _check_launch_template_imds(resource: Resource, ctx: Context) -> Iterator[str]:
    if resource.resource_type != LAUNCH_TEMPLATE:
        return
    options = resource.props.get("metadataOptions") or {}
    if options.get("httpTokens") != "required":
        yield "metadataOptions.httpTokens must be required (IMDSv2 only): IMDSv1 answers unauthenticated GETs"
    hops = whole_number(options.get("httpPutResponseHopLimit"))
    if hops != 1:
        yield (
            f"metadataOptions.httpPutResponseHopLimit is {hops if hops is not None else 'unset'}; it must be 1 so pods "
            "(one hop further than the node) cannot reach the node role's credentials"
        )


def _public_subnet_reason(subnet: Resource, resources: Sequence[Resource], by_urn: Mapping[str, Resource]) -> str | None:
    if subnet.props.get("mapPublicIpOnLaunch") is True:
        return "it has mapPublicIpOnLaunch"
    tags = subnet.props.get("tags")
    if is_map(tags) and "kubernetes.io/role/elb" in tags:
        return "it is tagged kubernetes.io/role/elb (a public load balancer subnet)"
    tables = {
        u
        for a in of_type(resources, ROUTE_TABLE_ASSOCIATION)
        if subnet.urn in dependency_urns(a, "subnetId")
        for u in dependency_urns(a, "routeTableId")
    }
    for table_urn in tables:
        routes = [r for r in of_type(resources, ROUTE) if table_urn in dependency_urns(r, "routeTableId")]
        gateways = [u for r in routes for u in dependency_urns(r, "gatewayId")]
        table = by_urn.get(table_urn)
        if table is not None:
            gateways += dependency_urns(table, "routes")
        if any(getattr(by_urn.get(g), "resource_type", None) == INTERNET_GATEWAY for g in gateways):
            return "its route table sends traffic to an internet gateway"
    return None


def _check_nodes_private(resources: Sequence[Resource], ctx: Context) -> Iterator[tuple[str | None, str]]:
    by_urn = index_by_urn(resources)
    for group in of_type(resources, NODE_GROUP):
        subnets = [by_urn[u] for u in dependency_urns(group, "subnetIds") if u in by_urn and by_urn[u].resource_type == SUBNET]
        if not subnets:
            yield (
                group.urn,
                f"node group {group.name}: subnetIds do not come from subnets in this stack, so they cannot be shown to be private",
            )
            continue
        for subnet in subnets:
            reason = _public_subnet_reason(subnet, resources, by_urn)
            if reason:
                yield (
                    group.urn,
                    f"node group {group.name} uses subnet {subnet.name}, which is public: {reason}; nodes belong in private subnets",
                )


RULES: tuple[Rule, ...] = (
    Rule(
        "eks-version-supported",
        "The EKS version is in standard support (versions.EKS_RELEASES).",
        "mandatory",
        "high",
        resource_check=_check_eks_version,
    ),
    Rule(
        "eks-version-support-ending",
        "Warns when the EKS version leaves standard support within 60 days.",
        "advisory",
        "low",
        resource_check=_check_eks_version_window,
    ),
    Rule(
        "eks-control-plane-logs",
        "EKS ships api and audit logs; prod ships all five types.",
        "mandatory",
        "medium",
        resource_check=_check_eks_logs,
    ),
    Rule(
        "eks-secrets-encryption",
        "EKS envelope-encrypts Kubernetes secrets with KMS.",
        "mandatory",
        "high",
        resource_check=_check_eks_secrets,
    ),
    Rule(
        "eks-endpoint-access",
        "The EKS API endpoint is never open to 0.0.0.0/0, and is private in prod.",
        "mandatory",
        "critical",
        resource_check=_check_eks_endpoint,
    ),
    Rule(
        "eks-nodes-private-subnets",
        "EKS node groups run in private subnets only.",
        "mandatory",
        "high",
        stack_check=_check_nodes_private,
    ),
    Rule(
        "ec2-launch-template-imdsv2",
        "Launch templates require IMDSv2 with a hop limit of 1.",
        "mandatory",
        "high",
        resource_check=_check_launch_template_imds,
    ),
)
