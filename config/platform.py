"""`simfleet:platform`: network, endpoint, node groups, buckets, registries and the prod-only rules."""

from __future__ import annotations

import datetime
import ipaddress
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator

import versions
from catalog import is_gpu_family, load_catalog
from config.datasets import DatasetImport, import_problems
from config.errors import Issue
from config.observability import ObservabilityConfig
from config.types import (
    ALL_CONTROL_PLANE_LOGS,
    ECR_REPO_RE,
    LOG_RETENTION_DAYS,
    SECURITY_GROUP_ID_RE,
    CapacityType,
    ControlPlaneLogType,
    IamPrincipal,
    Model,
    RestrictedCidr,
)


class NetworkConfig(Model):
    cidr: ipaddress.IPv4Network = Field(description="VPC CIDR, private (RFC 1918), /16 to /20.")
    availability_zones: int = Field(2, ge=2, le=6, description="EKS needs at least two AZs.")
    nat_gateways: Literal["single", "perAz"] = Field(
        "single", description="single: one NAT for the VPC (cheap, one AZ of egress); perAz: one per AZ."
    )

    @field_validator("cidr")
    @classmethod
    def _cidr_fits(cls, cidr: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
        if not cidr.is_private:
            raise ValueError(
                f"{cidr} is not a private (RFC 1918) range; use one inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16 "
                "that no peered network uses, like 10.40.0.0/16"
            )
        if not 16 <= cidr.prefixlen <= 20:
            raise ValueError(
                f"{cidr} must be between /16 and /20: each AZ gets a private subnet of 1/8 of it "
                "(pods take VPC addresses) and a small public subnet"
            )
        return cidr


class DeployerAccess(Model):
    """Who may reach the API endpoint's private address on 443, besides the nodes and the stack's deployer group."""

    cidrs: list[RestrictedCidr] = Field(
        default_factory=list,
        description="Private networks (VPN, peered VPC, transit gateway) whose deploy machines reach the API endpoint "
        "over its private address on 443.",
    )
    security_group_ids: list[str] = Field(
        default_factory=list,
        description="Security groups in the cluster's VPC (or a peered VPC in the same region) whose members reach "
        "the API endpoint on 443. The stack's own deployer security group is always allowed.",
    )

    @model_validator(mode="after")
    def _deployer_rules(self) -> DeployerAccess:
        problems: list[str] = []
        public = [str(c) for c in self.cidrs if not c.is_private]
        if public:
            problems.append(
                f"cidrs {public} are not private ranges: the endpoint's private address is reached only from the VPC "
                "or networks connected to it; public networks go in publicAccessCidrs (never in prod)"
            )
        bad = [g for g in self.security_group_ids if not SECURITY_GROUP_ID_RE.match(g)]
        if bad:
            problems.append(f"securityGroupIds {bad} are not security group ids (sg- and 8 or 17 hex digits)")
        if len(set(self.cidrs)) != len(self.cidrs) or len(set(self.security_group_ids)) != len(self.security_group_ids):
            problems.append("an entry is listed twice")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class EndpointConfig(Model):
    public_access_cidrs: list[RestrictedCidr] = Field(
        default_factory=list,
        description="Networks allowed to reach the public API endpoint. Empty means private only.",
    )
    deployer_access: DeployerAccess = Field(
        default_factory=DeployerAccess,
        description="Extra sources allowed to the API endpoint on 443 (the cluster security group), for deploy runners.",
    )

    @property
    def private_only(self) -> bool:
        return not self.public_access_cidrs


class NodeGroupConfig(Model):
    instance_types: list[str] = Field(min_length=1)
    min_size: int = Field(ge=0)
    max_size: int = Field(ge=1)
    desired_size: int | None = Field(None, ge=0, description="Defaults to minSize; the autoscaler owns it after.")
    disk_gib: int = Field(20, alias="diskGiB", ge=20, le=16384, description="gp3 root volume size.")

    @property
    def desired(self) -> int:
        return self.min_size if self.desired_size is None else self.desired_size

    @model_validator(mode="after")
    def _sizes(self) -> NodeGroupConfig:
        if not self.min_size <= self.desired <= self.max_size:
            raise ValueError(
                f"sizes must satisfy minSize <= desiredSize <= maxSize, got {self.min_size} <= {self.desired} <= {self.max_size}"
            )
        if len(set(self.instance_types)) != len(self.instance_types):
            raise ValueError("instanceTypes lists the same type twice")
        return self


def shape_problems(instance_types: list[str]) -> list[str]:
    """Why `instance_types` cannot share one node group: unknown types, or more than one vCPU/memory shape."""
    catalog = load_catalog().instances
    unknown = [t for t in instance_types if t not in catalog]
    if unknown:
        return [
            f"instanceTypes {unknown} are not in data/aws_catalog.json; add their vCPU, memory and GPU count there "
            "(a node group's types are checked against it for one shape)"
        ]
    shapes = {(catalog[t].vcpu, catalog[t].memory_gib) for t in instance_types}
    if len(shapes) == 1:
        return []
    found = ", ".join(f"{t} ({catalog[t].vcpu} vCPU, {catalog[t].memory_gib:g} GiB)" for t in instance_types)
    return [
        "instanceTypes must all have the same vCPU and memory: the Cluster Autoscaler builds one node template per "
        f"node group from its first instance type and would schedule onto the others as if they had its shape; found "
        f"{found}. Keep one shape per group (for example g5.2xlarge with g6.2xlarge, both 8 vCPU and 32 GiB)"
    ]


class SystemNodeGroupConfig(NodeGroupConfig):
    min_size: int = Field(1, ge=1, description="At least one node: CoreDNS and the controllers live here.")

    @model_validator(mode="after")
    def _cpu_only(self) -> SystemNodeGroupConfig:
        gpu = [t for t in self.instance_types if is_gpu_family(t)]
        if gpu:
            raise ValueError(f"the system group is for CPU nodes; move {', '.join(gpu)} to nodeGroups.gpu")
        problems = shape_problems(self.instance_types)
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _default_capacity() -> list[CapacityType]:
    return ["onDemand"]


class GpuNodeGroupConfig(NodeGroupConfig):
    min_size: int = Field(0, ge=0, description="0 lets the autoscaler remove every GPU node when idle.")
    disk_gib: int = Field(
        200, alias="diskGiB", ge=100, le=16384, description="Isaac Lab images are large; 200 GiB gp3 by default."
    )
    capacity: Annotated[list[CapacityType], BeforeValidator(_one_or_many)] = Field(
        default_factory=_default_capacity,
        min_length=1,
        description="spot, onDemand, or both. Each capacity type becomes its own managed node group: "
        "batch runs need spot, interactive runs need onDemand.",
    )

    @model_validator(mode="after")
    def _gpu_types(self) -> GpuNodeGroupConfig:
        catalog = load_catalog().instances
        not_gpu = [t for t in self.instance_types if not is_gpu_family(t)]
        if not_gpu:
            raise ValueError(f"instanceTypes {not_gpu} are not GPU instance families (g4dn, g5, g6, g6e, p4d, p5, ...)")
        unknown = [t for t in self.instance_types if t not in catalog]
        if unknown:
            raise ValueError(
                f"instanceTypes {unknown} are not in data/aws_catalog.json; add their vCPU, memory and GPU "
                "count there (the autoscaler's scale-from-zero tags need the GPU count)"
            )
        gpu_counts = {catalog[t].gpus for t in self.instance_types}
        if len(gpu_counts) > 1:
            raise ValueError(
                "instanceTypes must have the same GPU count: the Cluster Autoscaler builds one node "
                f"template per group, found {sorted(gpu_counts)} GPUs per node"
            )
        problems = shape_problems(self.instance_types)
        if problems:
            raise ValueError("; ".join(problems))
        if len(set(self.capacity)) != len(self.capacity):
            raise ValueError("capacity lists the same type twice")
        return self

    @property
    def gpus_per_node(self) -> int:
        return load_catalog().instances[self.instance_types[0]].gpus


class NodeGroupsConfig(Model):
    system: SystemNodeGroupConfig
    gpu: GpuNodeGroupConfig


class ArtifactRetention(Model):
    logs: int = Field(30, ge=1, description="Days before objects under runs/*/logs/ expire.")
    videos: int = Field(90, ge=1)
    metrics: int = Field(180, ge=1)


class BucketsConfig(Model):
    artifact_retention_days: ArtifactRetention = Field(default_factory=ArtifactRetention)
    checkpoint_noncurrent_days: int = Field(30, ge=1, description="Days a replaced checkpoint version is kept.")
    abort_incomplete_upload_days: int = Field(7, ge=1)


# EFS lifecycle transitions accept only these ages (EFS API LifecyclePolicy.TransitionToIA: AFTER_<n>_DAY(S)).
EFS_IA_DAYS: tuple[int, ...] = (1, 7, 14, 30, 60, 90, 180, 270, 365)


class SharedStorageConfig(Model):
    """One encrypted EFS file system shared by runs and jobs through the `datasets` claim (ReadWriteMany)."""

    enabled: bool = Field(False, description="Create the EFS file system, its EFS CSI driver and the datasets claim.")
    transition_to_ia_days: int | None = Field(
        30,
        alias="transitionToIADays",
        description="Days without access before a file moves to EFS Infrequent Access (cheaper to store, billed per read); "
        f"one of {', '.join(map(str, EFS_IA_DAYS))}, or null to keep everything in Standard.",
    )
    throughput_mode: Literal["elastic", "bursting"] = Field(
        "elastic",
        description="elastic: pay per GB read/written, full speed at any size (datasets are read in bursts by batch jobs); "
        "bursting: no transfer charge, but a small file system earns a small baseline and runs out of burst credits.",
    )

    imports: list[DatasetImport] = Field(
        default_factory=list,
        description="S3 prefixes copied into the datasets volume, each by a sync Job with a role that may only read its prefix.",
    )

    @field_validator("transition_to_ia_days")
    @classmethod
    def _ia_days(cls, days: int | None) -> int | None:
        if days is not None and days not in EFS_IA_DAYS:
            raise ValueError(f"{days} is not an EFS lifecycle age; use one of {', '.join(map(str, EFS_IA_DAYS))} or null")
        return days

    @model_validator(mode="after")
    def _imports(self) -> SharedStorageConfig:
        problems = import_problems(self.imports, self.enabled)
        if problems:
            raise ValueError("; ".join(problems))
        return self


class MetricsConfig(Model):
    """A Prometheus Pushgateway that runs and jobs push their final metrics to."""

    enabled: bool = Field(False, description="Install the prometheus-pushgateway chart in the simfleet-metrics namespace.")
    persistence: bool = Field(
        True,
        description="Keep pushed metrics across Pushgateway restarts in a file on the EFS StorageClass (needs sharedStorage).",
    )


def _default_control_plane_logs() -> list[ControlPlaneLogType]:
    return ["api", "audit"]


# Control-plane log retention when the stack file sets none. Audit logs are what an incident review reads, so
# prod keeps a quarter; dev keeps a month, enough to debug the platform.
CONTROL_PLANE_LOG_RETENTION_DAYS = {"prod": 90, "other": 30}


def default_control_plane_log_retention(stack: str) -> int:
    return CONTROL_PLANE_LOG_RETENTION_DAYS["prod" if is_prod_stack(stack) else "other"]


class PlatformConfig(Model):
    kubernetes_version: str = Field(pattern=r"^1\.\d{2}$", description='EKS minor, e.g. "1.35".')
    network: NetworkConfig
    endpoint: EndpointConfig = Field(default_factory=EndpointConfig)
    secrets_encryption: bool = Field(True, description="KMS envelope encryption of Kubernetes secrets.")
    control_plane_logs: list[ControlPlaneLogType] = Field(default_factory=_default_control_plane_logs)
    control_plane_log_retention_days: int | None = Field(
        None,
        description="Days CloudWatch keeps the control-plane logs (/aws/eks/<cluster>/cluster). Unset: "
        f"{CONTROL_PLANE_LOG_RETENTION_DAYS['prod']} in prod stacks, {CONTROL_PLANE_LOG_RETENTION_DAYS['other']} otherwise.",
    )
    node_groups: NodeGroupsConfig
    buckets: BucketsConfig = Field(default_factory=BucketsConfig)
    repositories: list[str] = Field(default_factory=lambda: ["monty", "unitree-sim", "glue-base"], min_length=1)
    keep_tagged_images: int = Field(10, ge=1, le=1000, description="Tagged images kept per ECR repository.")
    image_allow_list: list[str] = Field(
        default_factory=list, description="Registry prefixes, besides the stack's ECR, that runs may pull from."
    )
    cluster_admins: list[IamPrincipal] = Field(default_factory=list, description="IAM roles/users given cluster admin.")
    deploy_roles: list[IamPrincipal] = Field(
        default_factory=list,
        description="IAM roles that run `pulumi up` for this stack (the deploy workflow's role, an operator's role): each "
        "gets cluster admin through an access entry, so a cluster created by one of them can be updated by the others. "
        "The identity that creates the cluster already holds EKS's creator entry and gets no second one.",
    )
    run_operators: list[IamPrincipal] = Field(
        default_factory=list, description="IAM roles/users that may watch and manage runs in the runs namespace."
    )
    tags: dict[str, str] = Field(default_factory=dict)
    shared_storage: SharedStorageConfig = Field(default_factory=SharedStorageConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    observability: ObservabilityConfig = Field(default_factory=ObservabilityConfig)
    metrics_adapter: bool = Field(
        False,
        description="true when the cluster serves custom.metrics.k8s.io (a metrics adapter such as prometheus-adapter, "
        "installed outside simfleet); services may then autoscale on pods metrics. simfleet does not install one.",
    )

    @field_validator("kubernetes_version")
    @classmethod
    def _in_standard_support(cls, version: str, info: ValidationInfo) -> str:
        context = info.context or {}
        today: datetime.date = context.get("today") or datetime.date.today()
        release = versions.eks_release(version)
        # The versions a stack may choose: in standard support and fully pinned (versions.deployable_versions).
        in_support = ", ".join(versions.deployable_versions(today))
        if release is None:
            raise ValueError(
                f"{version} is not in the EKS release table (versions.py); versions simfleet can deploy: {in_support}"
            )
        if release.end_of_standard < today:
            raise ValueError(
                f"{version} left EKS standard support on {release.end_of_standard} (extended support costs "
                f"6x the control-plane price); choose one of {in_support}"
            )
        missing = versions.missing_pins(version)
        if missing:
            raise ValueError(f"simfleet has no pins for {version} yet: add {' and '.join(missing)} to versions.py")
        unconfirmed = versions.unconfirmed_pins(version)
        if unconfirmed and "warnings" in context:
            context["warnings"].append(
                f"platform.kubernetesVersion: pinned add-on builds not listed for {version} by the sources versions.py "
                f"was checked against: {', '.join(unconfirmed)}; confirm with `aws eks describe-addon-versions "
                f"--kubernetes-version {version} --addon-name <name>` before the first `pulumi up`"
            )
        days_left = (release.end_of_standard - today).days
        if days_left <= versions.SUPPORT_WARNING_DAYS and "warnings" in context:
            context["warnings"].append(
                f"platform.kubernetesVersion: {version} leaves EKS standard support on "
                f"{release.end_of_standard} ({days_left} days); plan the upgrade"
            )
        return version

    @model_validator(mode="after")
    def _platform_rules(self) -> PlatformConfig:
        problems: list[str] = []
        for name in self.repositories:
            if not ECR_REPO_RE.match(name):
                problems.append(f"repositories: {name!r} is not a valid ECR repository name")
        if len(set(self.repositories)) != len(self.repositories):
            problems.append("repositories lists the same name twice")
        missing = {"api", "audit"} - set(self.control_plane_logs)
        if missing:
            problems.append(f"controlPlaneLogs must include api and audit (missing {sorted(missing)})")
        retention = self.control_plane_log_retention_days
        if retention is not None and retention not in LOG_RETENTION_DAYS:
            problems.append(
                f"controlPlaneLogRetentionDays {retention} is not a CloudWatch retention period; use one of "
                f"{', '.join(map(str, LOG_RETENTION_DAYS))}"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self


def storage_rules(platform: PlatformConfig) -> list[Issue]:
    """Platform pieces that only work together."""
    issues: list[Issue] = []
    if platform.metrics.enabled and platform.metrics.persistence and not platform.shared_storage.enabled:
        issues.append(
            Issue(
                "platform.metrics.persistence",
                "the Pushgateway keeps its file on the EFS StorageClass, which needs platform.sharedStorage.enabled: true "
                "(simfleet installs no EBS CSI driver); turn shared storage on, or set metrics.persistence: false and "
                "accept that a restart loses what was pushed",
            )
        )
    return issues


def is_prod_stack(stack: str) -> bool:
    # The rule follows the stack name, not a config flag, so a prod stack cannot opt out of it.
    return stack == "prod" or stack.startswith("prod-")


def prod_rules(platform: PlatformConfig, stack: str) -> list[Issue]:
    issues: list[Issue] = []
    if is_prod_stack(stack):
        if not platform.endpoint.private_only:
            issues.append(
                Issue(
                    "platform.endpoint.publicAccessCidrs", "prod clusters have a private endpoint only; remove the public CIDRs"
                )
            )
        if platform.network.nat_gateways != "perAz":
            issues.append(
                Issue(
                    "platform.network.natGateways",
                    "prod needs one NAT gateway per AZ (perAz) so an AZ outage does not cut egress",
                )
            )
        if not platform.secrets_encryption:
            issues.append(Issue("platform.secretsEncryption", "prod requires KMS envelope encryption of secrets"))
        missing = sorted(set(ALL_CONTROL_PLANE_LOGS) - set(platform.control_plane_logs))
        if missing:
            issues.append(Issue("platform.controlPlaneLogs", f"prod ships all five control-plane log types; missing {missing}"))
    return issues


# Headroom a node keeps for the kubelet, the OS and the per-node DaemonSets (CNI, kube-proxy, device plugin, log
# shipping, the EFS CSI node). A pod that asks for more than the node minus this never schedules. The observability
# add-on's agent and DCGM exporter come on top when it is on (config/fit.py node_headroom).
NODE_RESERVED_CPU = 0.5
NODE_RESERVED_MEMORY_GIB = 2.5
