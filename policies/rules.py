"""simfleet's policy rules as pure functions: the one source of truth for the CrossGuard pack and the offline plan.

A rule sees resources the way the Pulumi engine hands them to a policy pack: a type token, a URN, a name,
the engine's camelCase input properties, the parent URN and, for stack rules, which resources each
input came from (`property_dependencies`). `policies/pack.py` adapts `ResourceValidationArgs` and
`StackValidationArgs` to this shape; `tools/plan.py` builds it from the mocked registrations. Nothing
here imports pulumi or pulumi_policy, so the rules run in tests and in the plan without a gRPC server.

Props may be the policy SDK's read-only proxies (a `Mapping`/`Sequence` that raises UnknownValueError
on a value that is unknown during preview), so the code only uses Mapping/Sequence operations on them.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeGuard

import naming
import versions
from catalog import is_gpu_family, load_catalog
from config import ALL_CONTROL_PLANE_LOGS, PlatformConfig, is_prod_stack

Level = Literal["mandatory", "advisory"]
Severity = Literal["low", "medium", "high", "critical"]

DYNAMIC_TYPE = "pulumi-python:dynamic:Resource"
EKS_COMPONENT = "eks:index:Cluster"  # pulumi-eks remote component: what the offline plan (and Analyze of components) sees
EKS_CLUSTER = "aws:eks/cluster:Cluster"  # its child, which the engine also analyzes in a real preview
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
SUBNET = "aws:ec2/subnet:Subnet"
ROUTE = "aws:ec2/route:Route"
ROUTE_TABLE_ASSOCIATION = "aws:ec2/routeTableAssociation:RouteTableAssociation"
INTERNET_GATEWAY = "aws:ec2/internetGateway:InternetGateway"
ECR_REPOSITORY = "aws:ecr/repository:Repository"
ECR_LIFECYCLE = "aws:ecr/lifecyclePolicy:LifecyclePolicy"
IAM_ROLE = "aws:iam/role:Role"
# pulumi-aws 7 still ships the *V2 S3 types as deprecated aliases; a rule must accept both spellings.
BUCKETS = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
BUCKET_ENCRYPTION = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
)
BUCKET_PUBLIC_ACCESS = ("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",)
BUCKET_POLICY = ("aws:s3/bucketPolicy:BucketPolicy",)
BUCKET_LIFECYCLE = (
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
    "aws:s3/bucketLifecycleConfigurationV2:BucketLifecycleConfigurationV2",
)
BUCKET_VERSIONING = ("aws:s3/bucketVersioning:BucketVersioning", "aws:s3/bucketVersioningV2:BucketVersioningV2")
# Resources that carry an IAM policy document in `policy`.
IAM_POLICY_DOCUMENTS = (
    "aws:iam/policy:Policy",
    "aws:iam/rolePolicy:RolePolicy",
    "aws:iam/userPolicy:UserPolicy",
    "aws:iam/groupPolicy:GroupPolicy",
)
IAM_ATTACHMENTS = (
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
    "aws:iam/policyAttachment:PolicyAttachment",
    "aws:iam/userPolicyAttachment:UserPolicyAttachment",
    "aws:iam/groupPolicyAttachment:GroupPolicyAttachment",
)

SSE_ALGORITHMS = ("AES256", "aws:kms", "aws:kms:dsse")  # S3 ServerSideEncryptionByDefault.SSEAlgorithm values
ECR_HOST_RE = re.compile(r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
# Pod Security Standards, "restricted" profile (kubernetes.io/docs/concepts/security/pod-security-standards/).
RESTRICTED_VOLUME_TYPES = frozenset(
    {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
)
SECCOMP_ALLOWED = ("RuntimeDefault", "Localhost")


# ---------------------------------------------------------------------------------------------
# The shapes rules see
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resource:
    """One resource as the policy engine describes it (attribute names follow pulumi_policy.PolicyResource)."""

    resource_type: str
    urn: str
    name: str
    props: Mapping[str, Any]
    parent: str | None = None
    # input property -> URNs of the resources its value came from
    property_dependencies: Mapping[str, Sequence[str]] = field(default_factory=dict)
    # A run's Kubernetes objects when the caller already has them; otherwise rendered from `props` on demand.
    rendered: Sequence[Mapping[str, Any]] | None = None


@dataclass(frozen=True)
class Context:
    """What a rule may know besides the resources: the stack and the parts of its config rules enforce."""

    stack: str
    repositories: tuple[str, ...] = ()  # the stack's ECR repositories (platform.repositories)
    image_allow_list: tuple[str, ...] = ()  # platform.imageAllowList
    extra_images: tuple[str, ...] = ()  # simfleet's own pinned helper images (versions.py)
    today: datetime.date = field(default_factory=datetime.date.today)

    @property
    def is_prod(self) -> bool:
        return is_prod_stack(self.stack)


@dataclass(frozen=True)
class Violation:
    policy: str
    level: Level
    urn: str | None
    message: str

    def as_json(self) -> dict[str, Any]:
        return {"policy": self.policy, "level": self.level, "urn": self.urn, "message": self.message}


ResourceCheck = Callable[[Resource, Context], Iterable[str]]
StackCheck = Callable[[Sequence[Resource], Context], Iterable[tuple[str | None, str]]]


@dataclass(frozen=True)
class Rule:
    """A policy: exactly one of `resource_check` (per resource) or `stack_check` (whole stack) is set."""

    name: str
    description: str
    level: Level
    severity: Severity
    resource_check: ResourceCheck | None = None
    stack_check: StackCheck | None = None

    def __post_init__(self) -> None:
        if (self.resource_check is None) == (self.stack_check is None):
            raise ValueError(f"rule {self.name}: set exactly one of resource_check and stack_check")


def platform_settings(platform: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(repositories, imageAllowList) from a raw `simfleet:platform` mapping, with the config package's defaults."""
    platform = platform if _is_map(platform) else {}
    repositories = platform.get("repositories") or PlatformConfig.model_fields["repositories"].get_default(
        call_default_factory=True
    )
    return tuple(str(r) for r in repositories), tuple(str(p) for p in platform.get("imageAllowList") or [])


def stack_from_urn(urn: str) -> str:
    """`urn:pulumi:<stack>::<project>::<type>::<name>` -> `<stack>`."""
    if not urn.startswith("urn:pulumi:") or "::" not in urn:
        raise ValueError(f"{urn!r} is not a Pulumi URN")
    return urn[len("urn:pulumi:") :].split("::", 1)[0]


# ---------------------------------------------------------------------------------------------
# Small helpers that work on plain values and on the policy SDK's proxies alike
# ---------------------------------------------------------------------------------------------


def _is_map(value: Any) -> TypeGuard[Mapping[str, Any]]:
    return isinstance(value, Mapping)


def _is_list(value: Any) -> TypeGuard[Sequence[Any]]:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def _get(value: Any, *path: str | int) -> Any:
    for key in path:
        if isinstance(key, int):
            if not _is_list(value) or key >= len(value):
                return None
            value = value[key]
        else:
            if not _is_map(value) or key not in value:
                return None
            value = value[key]
    return value


def whole_number(value: Any) -> int | None:
    """An integer property: the engine's props come through protobuf Structs, so 600 arrives as 600.0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        return None
    return int(value)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if _is_list(value):
        return list(value)
    return [value]


def _policy_document(value: Any) -> Mapping[str, Any] | None:
    """An IAM/S3 policy given as a JSON string (the usual case) or as an object."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if _is_map(value) else None


def _statements(document: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    if document is None:
        return []
    return [s for s in _as_list(document.get("Statement")) if _is_map(s)]


def _index(resources: Sequence[Resource]) -> dict[str, Resource]:
    return {r.urn: r for r in resources}


def _of_type(resources: Sequence[Resource], types: str | tuple[str, ...]) -> list[Resource]:
    wanted = (types,) if isinstance(types, str) else types
    return [r for r in resources if r.resource_type in wanted]


def _deps(resource: Resource, prop: str) -> list[str]:
    return [str(u) for u in _as_list(resource.property_dependencies.get(prop))]


# ---------------------------------------------------------------------------------------------
# S3
# ---------------------------------------------------------------------------------------------


def bucket_purpose(bucket: Resource) -> str | None:
    """`artifacts` / `checkpoints` from the bucket's purpose tag, else from its names."""
    tags = bucket.props.get("tags")
    tagged = tags.get("simfleet:purpose") if _is_map(tags) else None
    if isinstance(tagged, str):
        return tagged
    names = " ".join(str(bucket.props.get(k) or "") for k in ("bucket", "bucketPrefix")) + " " + bucket.name
    for purpose in ("checkpoints", "artifacts"):
        if purpose.rstrip("s") in names:
            return purpose
    return None


def _bucket_settings(resources: Sequence[Resource], types: tuple[str, ...]) -> dict[str, list[Resource]]:
    """bucket URN -> the settings resources of `types` that target it.

    Settings name their bucket in `bucket`: matched by value when both names are known, else by
    following `property_dependencies["bucket"]`, through other settings resources when they are chained
    (simfleet applies a bucket's settings one after another, each taking the name from the one before).
    """
    by_urn = _index(resources)
    buckets = _of_type(resources, BUCKETS)
    by_name = {str(b.props.get("bucket")): b.urn for b in buckets if isinstance(b.props.get("bucket"), str)}
    found: dict[str, list[Resource]] = {b.urn: [] for b in buckets}
    for setting in _of_type(resources, types):
        target = _bucket_of(setting, by_urn, by_name)
        if target is not None:
            found[target].append(setting)
    return found


def _bucket_of(setting: Resource, by_urn: Mapping[str, Resource], by_name: Mapping[str, str]) -> str | None:
    name = setting.props.get("bucket")
    if isinstance(name, str) and name in by_name:
        return by_name[name]
    queue, seen = _deps(setting, "bucket"), set()
    while queue:
        urn = queue.pop(0)
        if urn in seen:
            continue
        seen.add(urn)
        upstream = by_urn.get(urn)
        if upstream is None:
            continue
        if upstream.resource_type in BUCKETS:
            return urn
        queue += _deps(upstream, "bucket")
    return None


def _check_s3_encryption(resources: Sequence[Resource], ctx: Context) -> Iterator[tuple[str | None, str]]:
    settings = _bucket_settings(resources, BUCKET_ENCRYPTION)
    for bucket in _of_type(resources, BUCKETS):
        algorithms = [
            _get(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm")
            for setting in settings[bucket.urn]
            for rule in _as_list(setting.props.get("rules"))
        ]
        # The inline form on the bucket (pulumi-aws < 7).
        algorithms.append(
            _get(bucket.props, "serverSideEncryptionConfiguration", "rule", "applyServerSideEncryptionByDefault", "sseAlgorithm")
        )
        if not any(a in SSE_ALGORITHMS for a in algorithms):
            yield (
                bucket.urn,
                (
                    f"bucket {bucket.name} has no default encryption: add a BucketServerSideEncryptionConfiguration "
                    f"with applyServerSideEncryptionByDefault.sseAlgorithm one of {', '.join(SSE_ALGORITHMS)}"
                ),
            )


PUBLIC_ACCESS_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")


def _check_s3_public_access(resources: Sequence[Resource], ctx: Context) -> Iterator[tuple[str | None, str]]:
    settings = _bucket_settings(resources, BUCKET_PUBLIC_ACCESS)
    for bucket in _of_type(resources, BUCKETS):
        blocks = settings[bucket.urn]
        if not blocks:
            yield bucket.urn, f"bucket {bucket.name} has no BucketPublicAccessBlock; add one with all four flags true"
            continue
        for block in blocks:
            off = [flag for flag in PUBLIC_ACCESS_FLAGS if block.props.get(flag) is not True]
            if off:
                yield (
                    bucket.urn,
                    f"bucket {bucket.name}: public access block {block.name} leaves {', '.join(off)} off; set all four to true",
                )


def _denies_insecure_transport(statement: Mapping[str, Any]) -> bool:
    if statement.get("Effect") != "Deny":
        return False
    principal = statement.get("Principal")
    if not (principal == "*" or (_is_map(principal) and "*" in _as_list(principal.get("AWS")))):
        return False
    if not any(a in ("s3:*", "*") for a in _as_list(statement.get("Action"))):
        return False
    conditions = statement.get("Condition")
    if not _is_map(conditions):
        return False
    for operator in ("Bool", "BoolIfExists"):
        value = _get(conditions, operator, "aws:SecureTransport")
        if any(str(v).lower() == "false" for v in _as_list(value)):
            resources = [str(r) for r in _as_list(statement.get("Resource"))]
            # Both the bucket (ListBucket, config calls) and its objects (`arn/*`) must be covered.
            return any(r.endswith("/*") for r in resources) and any(not r.endswith("/*") for r in resources)
    return False


def _check_s3_tls_only(resources: Sequence[Resource], ctx: Context) -> Iterator[tuple[str | None, str]]:
    settings = _bucket_settings(resources, BUCKET_POLICY)
    for bucket in _of_type(resources, BUCKETS):
        documents = [_policy_document(p.props.get("policy")) for p in settings[bucket.urn]]
        documents.append(_policy_document(bucket.props.get("policy")))
        if not any(_denies_insecure_transport(s) for d in documents for s in _statements(d)):
            yield (
                bucket.urn,
                (
                    f"bucket {bucket.name} does not refuse plain HTTP: its bucket policy needs a Deny of s3:* for "
                    "Principal * on the bucket and bucket/* when aws:SecureTransport is false"
                ),
            )


def _expiring_rule(rule: Any) -> bool:
    return _is_map(rule) and rule.get("status") == "Enabled" and _is_map(rule.get("expiration"))


def _check_s3_artifacts_lifecycle(resources: Sequence[Resource], ctx: Context) -> Iterator[tuple[str | None, str]]:
    settings = _bucket_settings(resources, BUCKET_LIFECYCLE)
    for bucket in _of_type(resources, BUCKETS):
        if bucket_purpose(bucket) != "artifacts":
            continue
        rules = [rule for s in settings[bucket.urn] for rule in _as_list(s.props.get("rules"))]
        inline = [
            r for r in _as_list(bucket.props.get("lifecycleRules")) if _is_map(r) and r.get("enabled") and r.get("expirations")
        ]
        if not any(_expiring_rule(r) for r in rules) and not inline:
            yield (
                bucket.urn,
                (
                    f"artifacts bucket {bucket.name} keeps everything forever: add a BucketLifecycleConfiguration "
                    "with an Enabled rule that has an expiration (platform.buckets.artifactRetentionDays)"
                ),
            )


def _check_s3_checkpoints_versioning(resources: Sequence[Resource], ctx: Context) -> Iterator[tuple[str | None, str]]:
    settings = _bucket_settings(resources, BUCKET_VERSIONING)
    for bucket in _of_type(resources, BUCKETS):
        if bucket_purpose(bucket) != "checkpoints":
            continue
        statuses = [_get(s.props, "versioningConfiguration", "status") for s in settings[bucket.urn]]
        if "Enabled" not in statuses and _get(bucket.props, "versioning", "enabled") is not True:
            yield (
                bucket.urn,
                (
                    f"checkpoints bucket {bucket.name} is not versioned: a rerun would overwrite the only copy of "
                    "a checkpoint; add a BucketVersioning with versioningConfiguration.status Enabled"
                ),
            )


# ---------------------------------------------------------------------------------------------
# ECR
# ---------------------------------------------------------------------------------------------


def _check_ecr_scan(resource: Resource, ctx: Context) -> Iterator[str]:
    if resource.resource_type == ECR_REPOSITORY and _get(resource.props, "imageScanningConfiguration", "scanOnPush") is not True:
        yield f"repository {resource.props.get('name') or resource.name}: set imageScanningConfiguration.scanOnPush to true"


def _check_ecr_immutable(resource: Resource, ctx: Context) -> Iterator[str]:
    if resource.resource_type == ECR_REPOSITORY and resource.props.get("imageTagMutability") != "IMMUTABLE":
        yield (
            f"repository {resource.props.get('name') or resource.name}: imageTagMutability is "
            f"{resource.props.get('imageTagMutability') or 'MUTABLE (the default)'}; runs pin images by tag, "
            "so tags must be IMMUTABLE"
        )


def _check_ecr_lifecycle(resources: Sequence[Resource], ctx: Context) -> Iterator[tuple[str | None, str]]:
    repositories = _of_type(resources, ECR_REPOSITORY)
    covered: set[str] = set()
    by_name = {str(r.props.get("name")): r.urn for r in repositories if isinstance(r.props.get("name"), str)}
    for policy in _of_type(resources, ECR_LIFECYCLE):
        document = _policy_document(policy.props.get("policy"))
        if document is None or not _as_list(document.get("rules")):
            continue
        target = policy.props.get("repository")
        if isinstance(target, str) and target in by_name:
            covered.add(by_name[target])
        covered.update(_deps(policy, "repository"))
    for repo in repositories:
        if repo.urn not in covered:
            yield (
                repo.urn,
                (
                    f"repository {repo.props.get('name') or repo.name} has no lifecycle policy with rules; "
                    "add an aws.ecr.LifecyclePolicy so old images expire"
                ),
            )


# ---------------------------------------------------------------------------------------------
# EKS
# ---------------------------------------------------------------------------------------------


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
        configs = _as_list(props.get("encryptionConfig"))  # one object in pulumi-aws 7, a list before
        secrets = any("secrets" in _as_list(_get(c, "resources")) and bool(_get(c, "provider", "keyArn")) for c in configs)
        prefix = "vpcConfig."
    else:
        return None
    version = props.get("version")
    return ClusterView(
        version=str(version) if version is not None else None,
        log_types=tuple(str(t) for t in _as_list(props.get("enabledClusterLogTypes"))),
        # Both pulumi-eks and the EKS API default the public endpoint to on.
        public_access=True if public is None else bool(public),
        public_cidrs=tuple(str(c) for c in _as_list(cidrs)),
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
    if _is_map(tags) and "kubernetes.io/role/elb" in tags:
        return "it is tagged kubernetes.io/role/elb (a public load balancer subnet)"
    tables = {
        u
        for a in _of_type(resources, ROUTE_TABLE_ASSOCIATION)
        if subnet.urn in _deps(a, "subnetId")
        for u in _deps(a, "routeTableId")
    }
    for table_urn in tables:
        routes = [r for r in _of_type(resources, ROUTE) if table_urn in _deps(r, "routeTableId")]
        gateways = [u for r in routes for u in _deps(r, "gatewayId")]
        table = by_urn.get(table_urn)
        if table is not None:
            gateways += _deps(table, "routes")
        if any(getattr(by_urn.get(g), "resource_type", None) == INTERNET_GATEWAY for g in gateways):
            return "its route table sends traffic to an internet gateway"
    return None


def _check_nodes_private(resources: Sequence[Resource], ctx: Context) -> Iterator[tuple[str | None, str]]:
    by_urn = _index(resources)
    for group in _of_type(resources, NODE_GROUP):
        subnets = [by_urn[u] for u in _deps(group, "subnetIds") if u in by_urn and by_urn[u].resource_type == SUBNET]
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


# ---------------------------------------------------------------------------------------------
# IAM
# ---------------------------------------------------------------------------------------------

WILDCARD_CHARS = ("*", "?")
SERVICE_ACCOUNT_SUBJECT_RE = re.compile(r"^system:serviceaccount:[a-z0-9]([-a-z0-9]*[a-z0-9])?:[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def _web_identity_statements(document: Mapping[str, Any] | None) -> list[tuple[int, Mapping[str, Any]]]:
    out = []
    for index, statement in enumerate(_statements(document)):
        actions = [str(a) for a in _as_list(statement.get("Action"))]
        federated = _get(statement, "Principal", "Federated")
        if statement.get("Effect") == "Allow" and (
            "sts:AssumeRoleWithWebIdentity" in actions or any(":oidc-provider/" in str(f) for f in _as_list(federated))
        ):
            out.append((index, statement))
    return out


def _check_irsa_trust(resource: Resource, ctx: Context) -> Iterator[str]:
    if resource.resource_type != IAM_ROLE:
        return
    document = _policy_document(resource.props.get("assumeRolePolicy"))
    for index, statement in _web_identity_statements(document):
        where = f"assumeRolePolicy Statement[{index}]"
        conditions = statement.get("Condition")
        conditions = conditions if _is_map(conditions) else {}
        subjects: list[Any] = []
        audiences: list[Any] = []
        for operator, pairs in conditions.items():
            if not _is_map(pairs):
                continue
            for key, value in pairs.items():
                if str(key).endswith(":sub"):
                    if operator != "StringEquals":
                        yield f"{where}: {operator} on {key} matches patterns; use StringEquals with one service account"
                    else:
                        subjects += _as_list(value)
                elif str(key).endswith(":aud") and operator == "StringEquals":
                    audiences += _as_list(value)
        if len(subjects) != 1:
            yield (
                f"{where}: web identity trust must be scoped to exactly one service account with StringEquals "
                f"<issuer>:sub = system:serviceaccount:<namespace>:<name> (found {len(subjects)} subjects)"
            )
        for subject in subjects:
            text = str(subject)
            if any(w in text for w in WILDCARD_CHARS) or not SERVICE_ACCOUNT_SUBJECT_RE.match(text):
                yield f"{where}: {text!r} does not name one service account (system:serviceaccount:<namespace>:<name>, no wildcards)"
        if audiences != ["sts.amazonaws.com"]:
            yield f"{where}: pin StringEquals <issuer>:aud to sts.amazonaws.com (found {audiences or 'none'})"


def _admin_statements(document: Mapping[str, Any] | None) -> Iterator[int]:
    for index, statement in enumerate(_statements(document)):
        actions = [str(a) for a in _as_list(statement.get("Action"))]
        targets = [str(r) for r in _as_list(statement.get("Resource"))]
        if statement.get("Effect") == "Allow" and any(a in ("*", "*:*") for a in actions) and "*" in targets:
            yield index


def _check_no_admin(resource: Resource, ctx: Context) -> Iterator[str]:
    props = resource.props
    documents: list[tuple[str, Any]] = []
    arns: list[Any] = []
    if resource.resource_type == IAM_ROLE:
        documents += [(f"inlinePolicies[{i}]", _get(p, "policy")) for i, p in enumerate(_as_list(props.get("inlinePolicies")))]
        arns += _as_list(props.get("managedPolicyArns"))
    elif resource.resource_type in IAM_POLICY_DOCUMENTS:
        documents.append(("policy", props.get("policy")))
    elif resource.resource_type in IAM_ATTACHMENTS:
        arns.append(props.get("policyArn"))
    for where, value in documents:
        for index in _admin_statements(_policy_document(value)):
            yield f"{where} Statement[{index}] allows Action * on Resource *; grant the actions and resources the role needs"
    for arn in arns:
        if str(arn).endswith(":policy/AdministratorAccess"):
            yield f"{arn} grants * on *; attach a policy scoped to what the role needs"


# ---------------------------------------------------------------------------------------------
# Runs (SimRun dynamic resources)
# ---------------------------------------------------------------------------------------------


def is_run(resource: Resource) -> bool:
    """Every dynamic resource shares one type; a run is the one whose props hold its name, hash and spec."""
    props = resource.props
    return resource.resource_type == DYNAMIC_TYPE and all(k in props for k in ("runName", "specHash", "spec"))


def run_objects(resource: Resource) -> list[Mapping[str, Any]]:
    """The run's Kubernetes objects, rendered from its SimRun inputs by the provider's own renderer; [] if they do not
    render (run-deadline-and-ttl then reports why, so a run that cannot render never passes the pack quietly)."""
    if resource.rendered is not None:
        return list(resource.rendered)
    return list(_rendered(_render_key(resource))[0])


def render_error(resource: Resource) -> str | None:
    """Why a run's objects do not render from its inputs, or None."""
    return None if resource.rendered is not None else _rendered(_render_key(resource))[1]


# The inputs a run's objects are rendered from (workloads/inputs.py).
_RENDERED_FROM = ("kind", "runName", "namespace", "specHash", "spec", "context")


def _render_key(resource: Resource) -> tuple[str, ...]:
    # Only what rendering reads (all plain text): the connection may still be unknown in a preview.
    return tuple(str(resource.props.get(k)) for k in _RENDERED_FROM)


@functools.lru_cache(maxsize=4096)
def _rendered(key: tuple[str, ...]) -> tuple[tuple[Mapping[str, Any], ...], str | None]:
    from workloads.inputs import objects_from_inputs

    try:
        return tuple(objects_from_inputs(dict(zip(_RENDERED_FROM, key, strict=True)))), None
    except (ValueError, KeyError, TypeError) as err:
        return (), f"{type(err).__name__}: {err}"


def run_job(resource: Resource) -> Mapping[str, Any] | None:
    """The run's own Job (named after the run; a continuation's gate Job is another)."""
    name = resource.props.get("runName")
    jobs = [body for body in run_objects(resource) if _is_map(body) and body.get("kind") == "Job"]
    return next((job for job in jobs if _get(job, "metadata", "name") == name), jobs[0] if jobs else None)


def _pod_spec(job: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = _get(job, "spec", "template", "spec")
    return spec if _is_map(spec) else {}


def _containers(pod: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    out = []
    for kind in ("initContainers", "containers", "ephemeralContainers"):
        for container in _as_list(pod.get(kind)):
            if _is_map(container):
                out.append((f"{kind}[{container.get('name')}]", container))
    return out


def split_image(image: str) -> tuple[str | None, str, str | None, str | None]:
    """`host/repo:tag@digest` -> (host or None, repository, tag, digest). A first part with `.`/`:` or `localhost` is a host."""
    rest, _, digest = image.partition("@")
    name, tag = rest, None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        name, tag = rest[:colon], rest[colon + 1 :]
    first, sep, remainder = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first, remainder, tag, digest or None
    return None, name, tag, digest or None


def _run_containers(resource: Resource) -> list[tuple[str, Mapping[str, Any]]]:
    """The containers of every Job a run creates: its own, and a continuation's gate."""
    jobs = [o for o in run_objects(resource) if _is_map(o) and o.get("kind") == "Job"]
    return [(where, c) for job in jobs for where, c in _containers(_pod_spec(job))]


def _check_run_image_pinned(resource: Resource, ctx: Context) -> Iterator[str]:
    if is_run(resource):
        yield from _unpinned_images(_run_containers(resource))


def _unpinned_images(containers: Iterable[tuple[str, Mapping[str, Any]]]) -> Iterator[str]:
    for where, container in containers:
        image = str(container.get("image") or "")
        _, _, tag, digest = split_image(image)
        if digest:
            continue
        if not tag:
            yield f"{where}: image {image!r} has no tag, so it means :latest; pin a version tag or a digest"
        elif tag == "latest":
            yield f"{where}: image {image!r} uses :latest; pin a version tag or a digest"


def image_allowed(image: str, ctx: Context) -> bool:
    """From the stack's ECR (one of its repositories), simfleet's own helper images, or an allow-listed prefix."""
    if image in ctx.extra_images:
        return True
    host, repository, _, _ = split_image(image)
    if host and ECR_HOST_RE.match(host) and (not ctx.repositories or repository in ctx.repositories):
        return True
    for prefix in ctx.image_allow_list:
        bare = prefix.rstrip("/")
        if image == bare or image.startswith((bare + "/", bare + ":", bare + "@")):
            return True
    return False


def _check_run_image_source(resource: Resource, ctx: Context) -> Iterator[str]:
    if is_run(resource):
        yield from _images_from_elsewhere(_run_containers(resource), ctx)


def _images_from_elsewhere(containers: Iterable[tuple[str, Mapping[str, Any]]], ctx: Context) -> Iterator[str]:
    for where, container in containers:
        image = str(container.get("image") or "")
        if not image_allowed(image, ctx):
            yield (
                f"{where}: image {image!r} is neither in the stack's ECR repositories ({', '.join(ctx.repositories) or 'none'}) "
                "nor under platform.imageAllowList"
            )


def _gpu_quantity(value: Any) -> int | None:
    # Extended resources are whole numbers, written as "1" in manifests (or 1 / 1.0 through the engine).
    number = whole_number(value)
    if number is not None:
        return number
    try:
        return int(str(value))
    except ValueError:
        return None


def _check_run_gpu_limits(resource: Resource, ctx: Context) -> Iterator[str]:
    if is_run(resource):
        yield from _gpu_limit_problems(_run_containers(resource))


def _gpu_limit_problems(containers: Iterable[tuple[str, Mapping[str, Any]]]) -> Iterator[str]:
    for where, container in containers:
        requests = _get(container, "resources", "requests", naming.GPU_RESOURCE)
        limits = _get(container, "resources", "limits", naming.GPU_RESOURCE)
        if requests is None and limits is None:
            continue
        if limits is None:
            yield f"{where}: requests {requests} {naming.GPU_RESOURCE} but sets no limit; GPUs need request equal to limit"
        elif requests is not None and _gpu_quantity(requests) != _gpu_quantity(limits):
            yield f"{where}: {naming.GPU_RESOURCE} request {requests} differs from limit {limits}; they must be equal"


def _check_run_lifetime(resource: Resource, ctx: Context) -> Iterator[str]:
    if not is_run(resource):
        return
    job = run_job(resource)
    if job is None:
        error = render_error(resource)
        yield f"the run's objects do not render from its inputs ({error})" if error else "the run has no Job among its objects"
        return
    deadline = whole_number(_get(job, "spec", "activeDeadlineSeconds"))
    ttl = whole_number(_get(job, "spec", "ttlSecondsAfterFinished"))
    if deadline is None or deadline <= 0:
        yield "Job spec.activeDeadlineSeconds is not set: a hung simulation would hold its GPU forever (maxRuntime)"
    if ttl is None or ttl < 0:
        yield "Job spec.ttlSecondsAfterFinished is not set: finished Jobs and their pods would pile up (ttlAfterFinished)"


def restricted_pod_problems(pod: Mapping[str, Any]) -> list[str]:
    """Where a pod spec breaks the Pod Security Standards "restricted" profile."""
    problems: list[str] = []
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag) is True:
            problems.append(f"spec.{flag} is true")
    for volume in _as_list(pod.get("volumes")):
        if _is_map(volume):
            kinds = [k for k in volume if k != "name"]
            bad = [k for k in kinds if k not in RESTRICTED_VOLUME_TYPES]
            if bad:
                problems.append(f"volume {volume.get('name')} is of type {', '.join(bad)}")
    pod_sc = pod.get("securityContext") or {}
    if whole_number(pod_sc.get("runAsUser")) == 0:
        problems.append("securityContext.runAsUser is 0 (root)")
    for where, container in _containers(pod):
        sc = container.get("securityContext") or {}
        run_as_non_root = sc.get("runAsNonRoot") if sc.get("runAsNonRoot") is not None else pod_sc.get("runAsNonRoot")
        if run_as_non_root is not True:
            problems.append(f"{where}: runAsNonRoot is not true (set it on the pod or the container)")
        if whole_number(sc.get("runAsUser")) == 0:
            problems.append(f"{where}: runAsUser is 0 (root)")
        seccomp = _get(sc, "seccompProfile", "type") or _get(pod_sc, "seccompProfile", "type")
        if seccomp not in SECCOMP_ALLOWED:
            problems.append(f"{where}: seccompProfile.type is {seccomp or 'unset'}; use RuntimeDefault")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation must be false")
        if sc.get("privileged") is True:
            problems.append(f"{where}: privileged is true")
        capabilities = sc.get("capabilities") or {}
        if "ALL" not in _as_list(capabilities.get("drop")):
            problems.append(f"{where}: capabilities.drop must include ALL")
        added = [c for c in _as_list(capabilities.get("add")) if c != "NET_BIND_SERVICE"]
        if added:
            problems.append(f"{where}: capabilities.add {added} (only NET_BIND_SERVICE is allowed)")
        host_ports = [p.get("hostPort") for p in _as_list(container.get("ports")) if _is_map(p) and p.get("hostPort")]
        if host_ports:
            problems.append(f"{where}: hostPort {host_ports}")
    return problems


def _check_run_security(resource: Resource, ctx: Context) -> Iterator[str]:
    if not is_run(resource):
        return
    for job in (o for o in run_objects(resource) if _is_map(o) and o.get("kind") == "Job"):
        for problem in restricted_pod_problems(_pod_spec(job)):
            yield f"Job {_get(job, 'metadata', 'name')}: pod template breaks the restricted Pod Security Standard: {problem}"


def _pod_capacity(pod: Mapping[str, Any]) -> str | None:
    """SPOT / ON_DEMAND when the pod pins eks.amazonaws.com/capacityType, by nodeSelector or required node affinity."""
    selected = _get(pod, "nodeSelector", naming.CAPACITY_TYPE_LABEL)
    if isinstance(selected, str):
        return selected
    terms = _as_list(_get(pod, "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms"))
    values: set[str] = set()
    for term in terms:
        for expression in _as_list(_get(term, "matchExpressions")):
            if _get(expression, "key") == naming.CAPACITY_TYPE_LABEL and _get(expression, "operator") == "In":
                values.update(str(v) for v in _as_list(_get(expression, "values")))
    return values.pop() if len(values) == 1 else None


def _run_mode(resource: Resource) -> str | None:
    spec = resource.props.get("spec")
    try:
        return str(json.loads(spec).get("mode")) if isinstance(spec, str) else None
    except (ValueError, AttributeError):
        return None


def is_batch_run(resource: Resource) -> bool:
    """A simulation sweep. Batch jobs (kind `job`) are Indexed too, but choose their capacity type (`capacity`)."""
    if resource.props.get("kind") == "job":
        return False
    job = run_job(resource)
    return _run_mode(resource) == "batch" or (job is not None and _get(job, "spec", "completionMode") == "Indexed")


def _check_run_batch_spot(resource: Resource, ctx: Context) -> Iterator[str]:
    if not is_run(resource) or not is_batch_run(resource):
        return
    job = run_job(resource)
    capacity = _pod_capacity(_pod_spec(job)) if job is not None else None
    if capacity is not None:
        yield (
            f"batch runs try spot first and fall back to on-demand through Kueue's flavors, so the pod template must not "
            f"select {naming.CAPACITY_TYPE_LABEL} itself (found {capacity}): the admitted flavor adds it"
        )


def _check_run_queued(resource: Resource, ctx: Context) -> Iterator[str]:
    """A run's or job's Job: suspended, with a priority class, and a queue label or a gate that adds one."""
    if not is_run(resource):
        return
    job = run_job(resource)
    if job is None:
        return  # run-deadline-and-ttl reports a run whose objects do not render
    labels = _get(job, "metadata", "labels") or {}
    if _get(job, "spec", "suspend") is not True:
        yield "the Job must be created suspended (spec.suspend: true), so that only Kueue starts it"
    if not labels.get(naming.KUEUE_PRIORITY_LABEL):
        yield f"the Job has no {naming.KUEUE_PRIORITY_LABEL} label (set it at creation: Kueue limits changing it later)"
    if not labels.get(naming.KUEUE_QUEUE_LABEL):
        name = _get(job, "metadata", "name")
        gate = next(
            (o for o in run_objects(resource) if o.get("kind") == "Job" and _get(o, "metadata", "name") == f"{name}-gate"),
            None,
        )
        if gate is None:
            yield f"the Job has no {naming.KUEUE_QUEUE_LABEL} label and no gate Job that adds one: Kueue never admits it"


def _pod_gpus(pod: Mapping[str, Any]) -> int:
    """GPUs a pod holds while it runs: its containers plus native sidecars (restartPolicy Always init containers)."""

    def gpus(container: Mapping[str, Any]) -> int:
        value = _get(container, "resources", "limits", naming.GPU_RESOURCE)
        if value is None:
            value = _get(container, "resources", "requests", naming.GPU_RESOURCE)
        return _gpu_quantity(value) or 0 if value is not None else 0

    running = [c for c in _as_list(pod.get("containers")) if _is_map(c)]
    init = [c for c in _as_list(pod.get("initContainers")) if _is_map(c)]
    sidecars = [c for c in init if c.get("restartPolicy") == "Always"]
    one_shot = [c for c in init if c.get("restartPolicy") != "Always"]
    return max(sum(map(gpus, running + sidecars)), max(map(gpus, one_shot), default=0))


def pod_gpus(pod: Mapping[str, Any]) -> int:
    """GPUs a pod holds while it runs (its containers and native sidecars)."""
    return _pod_gpus(pod)


def gpu_demand(resources: Sequence[Resource]) -> dict[str, int]:
    """GPUs the stack's runs can ask for at once, by capacity type (`ANY` when a run does not pin one)."""
    demand: dict[str, int] = {}
    for run in filter(is_run, resources):
        job = run_job(run)
        if job is None:
            continue
        pod = _pod_spec(job)
        spec = job.get("spec") or {}
        pods = whole_number(spec.get("parallelism")) or 1
        completions = whole_number(spec.get("completions"))
        if completions is not None:
            pods = min(pods, completions)
        capacity = _pod_capacity(pod) or "ANY"
        demand[capacity] = demand.get(capacity, 0) + pods * _pod_gpus(pod)
    return demand


def gpu_supply(resources: Sequence[Resource]) -> dict[str, int]:
    """GPUs the GPU node groups hold at maxSize, by capacity type (a group's smallest instance type counts)."""
    catalog = load_catalog().instances
    supply: dict[str, int] = {}
    for group in _of_type(resources, NODE_GROUP):
        types = [str(t) for t in _as_list(group.props.get("instanceTypes"))]
        per_node = [catalog[t].gpus for t in types if is_gpu_family(t) and t in catalog]
        if not per_node:
            continue
        capacity = str(group.props.get("capacityType") or naming.EKS_CAPACITY["onDemand"])
        max_size = whole_number(_get(group.props, "scalingConfig", "maxSize")) or 0
        supply[capacity] = supply.get(capacity, 0) + max_size * min(per_node)
    return supply


def _check_gpu_capacity(resources: Sequence[Resource], ctx: Context) -> Iterator[tuple[str | None, str]]:
    demand, supply = gpu_demand(resources), gpu_supply(resources)
    for capacity, wanted in sorted(demand.items()):
        have = sum(supply.values()) if capacity == "ANY" else supply.get(capacity, 0)
        if wanted > have:
            label = "any" if capacity == "ANY" else capacity
            yield (
                None,
                (
                    f"runs and jobs can ask for {wanted} GPUs on {label} capacity at once, but the GPU node groups hold at most "
                    f"{have} (maxSize x GPUs per node); the rest stay Queued (or Pending) and start as GPUs free up. Raise "
                    "platform.nodeGroups.gpu.maxSize or lower parallelism if they should all run together"
                ),
            )


# ---------------------------------------------------------------------------------------------
# Services (pulumi-kubernetes Deployments in the services namespace)
# ---------------------------------------------------------------------------------------------

DEPLOYMENT = "kubernetes:apps/v1:Deployment"


def is_service(resource: Resource) -> bool:
    """A service's Deployment: it carries the service label (or, failing that, lives in the services namespace).

    The label is read first: it is plain, while the namespace is an output of the namespace resource, unknown during a
    first preview.
    """
    if resource.resource_type != DEPLOYMENT:
        return False
    if _is_map(_get(resource.props, "metadata", "labels")) and naming.SERVICE_LABEL in resource.props["metadata"]["labels"]:
        return True
    return _get(resource.props, "metadata", "namespace") == naming.SERVICES_NAMESPACE


def _service_containers(resource: Resource) -> list[tuple[str, Mapping[str, Any]]]:
    return _containers(_pod_spec(resource.props))


def _check_service_image_pinned(resource: Resource, ctx: Context) -> Iterator[str]:
    if is_service(resource):
        yield from _unpinned_images(_service_containers(resource))


def _check_service_image_source(resource: Resource, ctx: Context) -> Iterator[str]:
    if is_service(resource):
        yield from _images_from_elsewhere(_service_containers(resource), ctx)


def _check_service_gpu_limits(resource: Resource, ctx: Context) -> Iterator[str]:
    if is_service(resource):
        yield from _gpu_limit_problems(_service_containers(resource))


def _check_service_security(resource: Resource, ctx: Context) -> Iterator[str]:
    if not is_service(resource):
        return
    for problem in restricted_pod_problems(_pod_spec(resource.props)):
        yield f"pod template breaks the restricted Pod Security Standard: {problem}"


PROBE_HANDLERS = ("httpGet", "tcpSocket", "grpc", "exec")


def _check_service_probes(resource: Resource, ctx: Context) -> Iterator[str]:
    if not is_service(resource):
        return
    for container in _as_list(_pod_spec(resource.props).get("containers")):
        if not _is_map(container):
            continue
        where = f"containers[{container.get('name')}]"
        for probe, why in (
            ("readinessProbe", "the Service would send requests to a pod that cannot answer them yet"),
            ("livenessProbe", "a hung server would keep its pod, and its GPU, forever"),
        ):
            settings = container.get(probe)
            if not _is_map(settings) or not any(h in settings for h in PROBE_HANDLERS):
                yield f"{where}: no {probe}: {why}"


# ---------------------------------------------------------------------------------------------
# The rule set
# ---------------------------------------------------------------------------------------------

RULES: tuple[Rule, ...] = (
    Rule(
        "s3-encryption", "S3 buckets have default server-side encryption.", "mandatory", "high", stack_check=_check_s3_encryption
    ),
    Rule(
        "s3-public-access-block",
        "S3 buckets block every form of public access.",
        "mandatory",
        "critical",
        stack_check=_check_s3_public_access,
    ),
    Rule(
        "s3-tls-only", "S3 bucket policies deny requests made without TLS.", "mandatory", "high", stack_check=_check_s3_tls_only
    ),
    Rule(
        "s3-artifacts-lifecycle",
        "The artifacts bucket expires artifacts by lifecycle rules.",
        "mandatory",
        "medium",
        stack_check=_check_s3_artifacts_lifecycle,
    ),
    Rule(
        "s3-checkpoints-versioning",
        "The checkpoints bucket is versioned.",
        "mandatory",
        "high",
        stack_check=_check_s3_checkpoints_versioning,
    ),
    Rule("ecr-scan-on-push", "ECR repositories scan images on push.", "mandatory", "medium", resource_check=_check_ecr_scan),
    Rule("ecr-immutable-tags", "ECR repositories have immutable tags.", "mandatory", "high", resource_check=_check_ecr_immutable),
    Rule(
        "ecr-lifecycle-policy",
        "ECR repositories have a lifecycle policy.",
        "mandatory",
        "medium",
        stack_check=_check_ecr_lifecycle,
    ),
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
    Rule(
        "iam-irsa-trust-scoped",
        "IRSA trust policies admit exactly one service account (StringEquals :sub, no wildcards).",
        "mandatory",
        "critical",
        resource_check=_check_irsa_trust,
    ),
    Rule(
        "iam-no-admin-wildcard",
        "No IAM policy allows Action * on Resource *.",
        "mandatory",
        "critical",
        resource_check=_check_no_admin,
    ),
    Rule(
        "run-image-pinned",
        "Run images are pinned by tag or digest, never latest.",
        "mandatory",
        "high",
        resource_check=_check_run_image_pinned,
    ),
    Rule(
        "run-image-source",
        "Run images come from the stack's ECR or platform.imageAllowList.",
        "mandatory",
        "critical",
        resource_check=_check_run_image_source,
    ),
    Rule(
        "run-gpu-request-equals-limit",
        "Run containers request exactly the GPUs they are limited to.",
        "mandatory",
        "medium",
        resource_check=_check_run_gpu_limits,
    ),
    Rule(
        "run-deadline-and-ttl",
        "Run Jobs set activeDeadlineSeconds and ttlSecondsAfterFinished.",
        "mandatory",
        "medium",
        resource_check=_check_run_lifetime,
    ),
    Rule(
        "run-restricted-pod-security",
        "Run pods meet the restricted Pod Security Standard.",
        "mandatory",
        "high",
        resource_check=_check_run_security,
    ),
    Rule(
        "run-batch-spot-first",
        "Batch simulation runs leave the capacity type to Kueue (spot flavor first, then on-demand).",
        "mandatory",
        "medium",
        resource_check=_check_run_batch_spot,
    ),
    Rule(
        "run-queued",
        "Every run's and job's Job is created suspended with a Kueue priority class and its queue (or a gate that adds it).",
        "mandatory",
        "high",
        resource_check=_check_run_queued,
    ),
    Rule(
        "service-image-pinned",
        "Service images are pinned by tag or digest, never latest.",
        "mandatory",
        "high",
        resource_check=_check_service_image_pinned,
    ),
    Rule(
        "service-image-source",
        "Service images come from the stack's ECR or platform.imageAllowList.",
        "mandatory",
        "critical",
        resource_check=_check_service_image_source,
    ),
    Rule(
        "service-gpu-request-equals-limit",
        "Service containers request exactly the GPUs they are limited to.",
        "mandatory",
        "medium",
        resource_check=_check_service_gpu_limits,
    ),
    Rule(
        "service-restricted-pod-security",
        "Service pods meet the restricted Pod Security Standard.",
        "mandatory",
        "high",
        resource_check=_check_service_security,
    ),
    Rule(
        "service-probes",
        "Service containers have readiness and liveness probes.",
        "mandatory",
        "medium",
        resource_check=_check_service_probes,
    ),
    Rule(
        "run-gpu-capacity",
        "The GPUs runs and jobs can ask for at once fit the GPU node groups' maximum.",
        "advisory",
        "low",
        stack_check=_check_gpu_capacity,
    ),
)


def evaluate(resources: Sequence[Resource], ctx: Context, rules: Sequence[Rule] = RULES) -> list[Violation]:
    """Every violation of `rules` in the stack, resource rules first, in resource order."""
    violations: list[Violation] = []
    for rule in rules:
        if rule.resource_check is not None:
            for resource in resources:
                violations += [Violation(rule.name, rule.level, resource.urn, m) for m in rule.resource_check(resource, ctx)]
        elif rule.stack_check is not None:
            violations += [Violation(rule.name, rule.level, urn, m) for urn, m in rule.stack_check(resources, ctx)]
    return violations


def helper_images() -> tuple[str, ...]:
    """simfleet's own pinned helper images (versions.py), which runs use besides the stack's ECR: the AWS CLI for the
    pod scripts, and kubectl (per Kubernetes minor) for the gate that releases continuations."""
    return (versions.AWS_CLI_IMAGE, *(versions.kubectl_image(minor) for minor in versions.KUBECTL_IMAGE_PINS))
