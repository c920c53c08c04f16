"""The stack config contract: pydantic models for `simfleet:platform` and `simfleet:runs`, validated once.

Every rule that can be checked without AWS lives here, so a bad stack file fails before a single
resource is registered. Errors are collected across the whole file and raised together as one
`ConfigError` that names the file, the path (`runs[2].images.sim`) and the reason.
"""

from __future__ import annotations

import datetime
import difflib
import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

import versions
from catalog import is_gpu_family, load_catalog

PROJECT_ROOT = Path(__file__).resolve().parent


# ---------------------------------------------------------------------------------------------
# Shared field types
# ---------------------------------------------------------------------------------------------


class Model(BaseModel):
    """Base for every config model: camelCase keys in YAML, unknown keys rejected, immutable."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


_DURATION_RE = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(value: Any) -> Any:
    """`2h`, `90m`, `1h30m`, `45s`, `1d` -> seconds. Integers are taken as seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 2h or 10m")
    if isinstance(value, int):
        return value
    if not isinstance(value, str) or not value:
        raise ValueError("expected a duration like 2h or 10m")
    match = _DURATION_RE.match(value.strip())
    if not match or not any(match.groups()):
        raise ValueError(f"{value!r} is not a duration; use forms like 2h, 90m, 1h30m, 45s or 1d")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


Duration = Annotated[
    int,
    BeforeValidator(parse_duration),
    WithJsonSchema({"type": "string", "pattern": r"^(\d+d)?(\d+h)?(\d+m)?(\d+s)?$", "examples": ["2h", "10m"]}),
]


def _no_open_cidr(value: Any) -> Any:
    network = ipaddress.ip_network(value) if isinstance(value, str) else value
    if isinstance(network, ipaddress.IPv4Network) and network.prefixlen == 0:
        raise ValueError("0.0.0.0/0 opens this to the whole internet; list the networks that need access")
    return value


RestrictedCidr = Annotated[ipaddress.IPv4Network, BeforeValidator(_no_open_cidr)]

LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_KEY_RE = re.compile(r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$")
IAM_PRINCIPAL_RE = re.compile(r"^arn:aws(-[a-z]+)*:iam::\d{12}:(role|user)/[\w+=,.@/-]+$")
ECR_REPO_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")

ControlPlaneLogType = Literal["api", "audit", "authenticator", "controllerManager", "scheduler"]
ALL_CONTROL_PLANE_LOGS: tuple[str, ...] = get_args(ControlPlaneLogType)
CapacityType = Literal["spot", "onDemand"]


# ---------------------------------------------------------------------------------------------
# simfleet:platform
# ---------------------------------------------------------------------------------------------


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
            raise ValueError(f"{cidr} is not a private (RFC 1918) range")
        if not 16 <= cidr.prefixlen <= 20:
            raise ValueError(
                f"{cidr} must be between /16 and /20: each AZ gets a private subnet of 1/8 of it "
                "(pods take VPC addresses) and a small public subnet"
            )
        return cidr


class EndpointConfig(Model):
    public_access_cidrs: list[RestrictedCidr] = Field(
        default_factory=list,
        description="Networks allowed to reach the public API endpoint. Empty means private only.",
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


class SystemNodeGroupConfig(NodeGroupConfig):
    min_size: int = Field(1, ge=1, description="At least one node: CoreDNS and the controllers live here.")

    @model_validator(mode="after")
    def _cpu_only(self) -> SystemNodeGroupConfig:
        gpu = [t for t in self.instance_types if is_gpu_family(t)]
        if gpu:
            raise ValueError(f"the system group is for CPU nodes; move {', '.join(gpu)} to nodeGroups.gpu")
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
        if len(set(self.capacity)) != len(self.capacity):
            raise ValueError("capacity lists the same type twice")
        return self

    @property
    def gpus_per_node(self) -> int:
        return load_catalog().instances[self.instance_types[0]].gpus

    @property
    def max_gpus(self) -> int:
        """GPUs the stack can hold at once: every capacity type's group at maxSize."""
        return self.max_size * self.gpus_per_node * len(self.capacity)


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


def _default_control_plane_logs() -> list[ControlPlaneLogType]:
    return ["api", "audit"]


class PlatformConfig(Model):
    kubernetes_version: str = Field(pattern=r"^1\.\d{2}$", description='EKS minor, e.g. "1.35".')
    network: NetworkConfig
    endpoint: EndpointConfig = Field(default_factory=EndpointConfig)
    secrets_encryption: bool = Field(True, description="KMS envelope encryption of Kubernetes secrets.")
    control_plane_logs: list[ControlPlaneLogType] = Field(default_factory=_default_control_plane_logs)
    node_groups: NodeGroupsConfig
    buckets: BucketsConfig = Field(default_factory=BucketsConfig)
    repositories: list[str] = Field(default_factory=lambda: ["monty", "unitree-sim", "glue-base"], min_length=1)
    keep_tagged_images: int = Field(10, ge=1, le=1000, description="Tagged images kept per ECR repository.")
    image_allow_list: list[str] = Field(
        default_factory=list, description="Registry prefixes, besides the stack's ECR, that runs may pull from."
    )
    cluster_admins: list[str] = Field(default_factory=list, description="IAM roles/users given cluster admin.")
    run_operators: list[str] = Field(
        default_factory=list, description="IAM roles/users that may watch and manage runs in the runs namespace."
    )
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("kubernetes_version")
    @classmethod
    def _in_standard_support(cls, version: str, info: ValidationInfo) -> str:
        context = info.context or {}
        today: datetime.date = context.get("today") or datetime.date.today()
        release = versions.eks_release(version)
        in_support = ", ".join(sorted(v for v, r in versions.EKS_RELEASES.items() if r.end_of_standard >= today))
        if release is None:
            raise ValueError(
                f"{version} is not in the EKS release table (versions.py); versions in standard support: {in_support}"
            )
        if release.end_of_standard < today:
            raise ValueError(
                f"{version} left EKS standard support on {release.end_of_standard} (extended support costs "
                f"6x the control-plane price); choose one of {in_support}"
            )
        missing = versions.missing_pins(version)
        if missing:
            raise ValueError(f"simfleet has no pins for {version} yet: add {' and '.join(missing)} to versions.py")
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
        for key in ("cluster_admins", "run_operators"):
            for arn in getattr(self, key):
                if not IAM_PRINCIPAL_RE.match(arn):
                    problems.append(f"{to_camel(key)}: {arn!r} is not an IAM role or user ARN")
        missing = {"api", "audit"} - set(self.control_plane_logs)
        if missing:
            problems.append(f"controlPlaneLogs must include api and audit (missing {sorted(missing)})")
        if problems:
            raise ValueError("; ".join(problems))
        return self


# ---------------------------------------------------------------------------------------------
# simfleet:runs
# ---------------------------------------------------------------------------------------------

RUN_NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# repo[:tag][@sha256:digest], optionally behind a registry host (anything with a dot or port before the first /).
IMAGE_RE = re.compile(
    r"^(?:(?P<registry>[a-z0-9.-]+(?::\d+)?)/)?(?P<repo>[a-z0-9]+(?:[._/-][a-z0-9]+)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)


@dataclass(frozen=True)
class ImageRef:
    registry: str | None
    repository: str
    tag: str | None
    digest: str | None

    @property
    def reference(self) -> str:
        ref = f"{self.repository}:{self.tag}" if self.tag else self.repository
        return f"{ref}@{self.digest}" if self.digest else ref


def parse_image(value: str) -> ImageRef:
    match = IMAGE_RE.match(value)
    if not match:
        raise ValueError(f"{value!r} is not an image reference (repo:tag or registry/repo:tag)")
    registry = match["registry"]
    # "monty:1f3c2a9" has no registry; "ghcr.io/x/y:1" does. A first segment without a dot or
    # port (e.g. "team/monty:1") is a repository path, as Docker resolves it.
    if registry and "." not in registry and ":" not in registry and registry != "localhost":
        return ImageRef(None, f"{registry}/{match['repo']}", match["tag"], match["digest"])
    return ImageRef(registry, match["repo"], match["tag"], match["digest"])


def _image(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("expected an image reference string like monty:1f3c2a9")
    ref = parse_image(value)
    if ref.tag is None and ref.digest is None:
        raise ValueError(f"{value!r} has no tag; pin a version tag or a sha256 digest")
    if ref.tag == "latest":
        raise ValueError(f"{value!r} uses the mutable tag 'latest'; pin a version tag or a sha256 digest")
    return value


ImageString = Annotated[str, BeforeValidator(_image)]


class Images(Model):
    sim: ImageString = Field(description="Isaac Lab / Unitree simulator image.")
    monty: ImageString = Field(description="Monty brain image.")
    glue: ImageString = Field(description="Glue bridge base image.")


class Checkpoint(Model):
    from_: str | None = Field(
        None,
        alias="from",
        description="null for a fresh brain, an s3:// URI, or run:<name> for another run's out-checkpoint.",
    )
    save: bool = Field(True, description="Upload /checkpoints/out.mstate when the run ends.")

    @model_validator(mode="after")
    def _source(self) -> Checkpoint:
        src = self.from_
        if src is None:
            return self
        if src.startswith("s3://"):
            bucket, _, key = src[5:].partition("/")
            if not re.match(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", bucket) or not key or key.endswith("/"):
                raise ValueError(f"from: {src!r} must be s3://<bucket>/<key of a checkpoint object>")
        elif src.startswith("run:"):
            if not RUN_NAME_RE.match(src[4:]):
                raise ValueError(f"from: {src!r} must name a run, like run:trot-baseline")
        else:
            raise ValueError(f"from: {src!r} must be null, an s3:// URI or run:<name>")
        return self

    @property
    def from_run(self) -> str | None:
        return self.from_[4:] if self.from_ and self.from_.startswith("run:") else None


class Viewport(Model):
    allowed_cidrs: list[RestrictedCidr] = Field(min_length=1, description="Networks that may open the viewport.")


QUANTITY_RE = re.compile(r"^\d+(\.\d+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")
_QUANTITY_FACTORS = {
    None: 1.0,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
}


def quantity_value(text: str) -> float:
    """A Kubernetes quantity as a float: "500m" -> 0.5, "16Gi" -> 17179869184."""
    match = QUANTITY_RE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a Kubernetes quantity")
    return float(text[: len(text) - len(match[2] or "")]) * _QUANTITY_FACTORS[match[2]]


def _quantity(value: Any) -> Any:
    text = str(value)
    quantity_value(text)
    return text


Quantity = Annotated[str, BeforeValidator(_quantity)]

MAX_RUNTIME_LIMIT = 7 * 24 * 3600


class RunSpec(Model):
    name: str = Field(description="DNS-1123 label starting with a letter, at most 50 characters.")
    mode: Literal["interactive", "batch"]
    images: Images
    profile: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$", description="Monty brain profile.")
    glue: str = Field(description="Path of the glue program, relative to the project root.")
    checkpoint: Checkpoint = Field(default_factory=Checkpoint)
    seeds: list[Annotated[int, Field(ge=0)]] = Field(default_factory=lambda: [0], min_length=1, max_length=1000)
    parallelism: int | None = Field(None, ge=1, description="Batch pods at once; defaults to one per seed.")
    max_runtime: Duration = Field(2 * 3600, gt=0, description="activeDeadlineSeconds of the Job.")
    ttl_after_finished: Duration = Field(600, ge=0, description="ttlSecondsAfterFinished of the Job.")
    viewport: Viewport | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    gpus: int = Field(1, ge=1, le=8, description="GPUs for the simulator container (request = limit).")
    cpu: Quantity = Field("3", description="CPU requested by the whole pod.")
    memory: Quantity = Field("12Gi", description="Memory requested by the whole pod.")
    rerun: int = Field(0, ge=0, description="Bump to start the same spec again as a fresh run.")

    @model_validator(mode="after")
    def _run_rules(self) -> RunSpec:
        problems: list[str] = []
        if not RUN_NAME_RE.match(self.name) or len(self.name) > 50:
            problems.append(
                f"name {self.name!r} must be a DNS-1123 label that starts with a letter and has at most "
                "50 characters (the Job, Service and pod names are built from it)"
            )
        if self.mode == "interactive" and len(self.seeds) != 1:
            problems.append("an interactive run has exactly one seed; use mode: batch to sweep seeds")
        if self.viewport and self.mode != "interactive":
            problems.append("viewport is only for interactive runs")
        if len(set(self.seeds)) != len(self.seeds):
            problems.append("seeds lists the same seed twice")
        if self.parallelism is not None and self.mode != "batch":
            problems.append("parallelism is only for batch runs")
        if self.max_runtime > MAX_RUNTIME_LIMIT:
            problems.append("maxRuntime is longer than 7d; split the run")
        glue = Path(self.glue)
        if glue.is_absolute() or ".." in glue.parts:
            problems.append(f"glue {self.glue!r} must be a path inside the project, like glue/trot.py")
        for key, value in self.labels.items():
            if not LABEL_KEY_RE.match(key) or len(key) > 63:
                problems.append(f"labels: key {key!r} is not a valid label name")
            if not LABEL_VALUE_RE.match(value) or len(value) > 63:
                problems.append(f"labels.{key}: {value!r} is not a valid label value")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def parallel_pods(self) -> int:
        return self.parallelism or len(self.seeds) if self.mode == "batch" else 1

    @property
    def capacity(self) -> CapacityType:
        return "spot" if self.mode == "batch" else "onDemand"


# ---------------------------------------------------------------------------------------------
# The whole stack
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Issue:
    path: str
    message: str


@dataclass(frozen=True)
class StackConfig:
    stack: str
    platform: PlatformConfig
    runs: tuple[RunSpec, ...]
    warnings: tuple[str, ...] = ()

    @property
    def is_prod(self) -> bool:
        return is_prod_stack(self.stack)

    @property
    def external_checkpoint_uris(self) -> list[str]:
        """`s3://` checkpoints runs start from; the run role may read exactly these objects."""
        return [run.checkpoint.from_ for run in self.runs if run.checkpoint.from_ and run.checkpoint.from_.startswith("s3://")]


class ConfigError(Exception):
    """Every problem found in one stack file. `str()` is the message users see."""

    def __init__(self, source: str, issues: Sequence[Issue]):
        self.source = source
        self.issues = list(issues)
        count = len(self.issues)
        lines = [f"{source}: {count} error{'s' if count != 1 else ''} in the stack config"]
        lines += [f"  - {issue.path}: {issue.message}" if issue.path else f"  - {issue.message}" for issue in self.issues]
        super().__init__("\n".join(lines))


def is_prod_stack(stack: str) -> bool:
    # The rule follows the stack name, not a config flag, so a prod stack cannot opt out of it.
    return stack == "prod" or stack.startswith("prod-")


def load_stack_config(
    platform: Any,
    runs: Any,
    *,
    stack: str,
    source: str,
    base_dir: Path = PROJECT_ROOT,
    today: datetime.date | None = None,
    lint_glue: Callable[[Path], list[str]] | None = None,
) -> StackConfig:
    """Validate the raw `simfleet:platform` and `simfleet:runs` values; raise ConfigError listing every problem."""
    today = today or datetime.date.today()
    issues: list[Issue] = []
    warnings: list[str] = []

    platform_cfg: PlatformConfig | None = None
    if platform is None:
        issues.append(Issue("platform", "simfleet:platform is required"))
    else:
        try:
            platform_cfg = PlatformConfig.model_validate(platform, context={"today": today, "warnings": warnings})
        except ValidationError as err:
            issues += _issues_from(err, "platform", PlatformConfig)

    from components.storage import bucket_name_problems

    issues += [
        Issue("stack", f"{problem} (stack names become part of the bucket names)")
        for problem in dict.fromkeys(bucket_name_problems(stack, "checkpoints"))
    ]

    run_specs: list[tuple[int, RunSpec]] = []
    if runs is None:
        runs = []
    if not isinstance(runs, list):
        issues.append(Issue("runs", "simfleet:runs must be a list of runs"))
        runs = []
    for index, raw in enumerate(runs):
        try:
            run_specs.append((index, RunSpec.model_validate(raw)))
        except ValidationError as err:
            issues += _issues_from(err, f"runs[{index}]", RunSpec)

    if platform_cfg is not None:
        issues += _prod_rules(platform_cfg, stack)
        issues += _run_platform_rules(platform_cfg, run_specs)
    issues += _run_cross_rules(run_specs, base_dir, lint_glue)

    if issues:
        raise ConfigError(source, sorted(issues, key=_file_order))
    assert platform_cfg is not None
    return StackConfig(stack, platform_cfg, tuple(spec for _, spec in run_specs), tuple(warnings))


def _file_order(issue: Issue) -> tuple[int, int]:
    match = re.match(r"^runs\[(\d+)\]", issue.path)
    return (1, int(match[1])) if match else (0, 0)


def _prod_rules(platform: PlatformConfig, stack: str) -> list[Issue]:
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


# Headroom a GPU node keeps for the kubelet, the OS and the per-node DaemonSets (CNI, kube-proxy,
# device plugin, log shipping). A run that asks for more than the node minus this never schedules.
NODE_RESERVED_CPU = 0.5
NODE_RESERVED_MEMORY_GIB = 2.5


def _run_platform_rules(platform: PlatformConfig, runs: Iterable[tuple[int, RunSpec]]) -> list[Issue]:
    issues: list[Issue] = []
    gpu = platform.node_groups.gpu
    catalog = load_catalog().instances
    known = [catalog[t] for t in gpu.instance_types if t in catalog]
    for index, run in runs:
        path = f"runs[{index}]"
        if run.capacity not in gpu.capacity:
            issues.append(
                Issue(
                    f"{path}.mode",
                    f"{run.mode} runs need {run.capacity} GPU capacity; add {run.capacity} to platform.nodeGroups.gpu.capacity",
                )
            )
        for slot in ("sim", "monty", "glue"):
            ref = parse_image(getattr(run.images, slot))
            if ref.registry is None and ref.repository not in platform.repositories:
                issues.append(
                    Issue(
                        f"{path}.images.{slot}",
                        f"repository {ref.repository!r} is not one of the stack's ECR repositories {platform.repositories}",
                    )
                )
        if not known:
            continue
        gpus_per_node = known[0].gpus
        if run.gpus > gpus_per_node:
            issues.append(Issue(f"{path}.gpus", f"asks for {run.gpus} GPUs but GPU nodes have {gpus_per_node}"))
        smallest_cpu = min(i.vcpu for i in known) - NODE_RESERVED_CPU
        smallest_mem = min(i.memory_gib for i in known) - NODE_RESERVED_MEMORY_GIB
        if quantity_value(run.cpu) > smallest_cpu:
            issues.append(
                Issue(f"{path}.cpu", f"{run.cpu} CPU does not fit the smallest GPU node ({smallest_cpu:g} CPU allocatable)")
            )
        if quantity_value(run.memory) > smallest_mem * 2**30:
            issues.append(
                Issue(f"{path}.memory", f"{run.memory} does not fit the smallest GPU node ({smallest_mem:g}Gi allocatable)")
            )
    return issues


def _run_cross_rules(
    runs: list[tuple[int, RunSpec]], base_dir: Path, lint_glue: Callable[[Path], list[str]] | None
) -> list[Issue]:
    issues: list[Issue] = []
    by_name: dict[str, tuple[int, RunSpec]] = {}
    for index, run in runs:
        if run.name in by_name:
            issues.append(Issue(f"runs[{index}].name", f"{run.name!r} is already used by runs[{by_name[run.name][0]}]"))
        else:
            by_name[run.name] = (index, run)
    for index, run in runs:
        source = run.checkpoint.from_run
        if source is None:
            continue
        path = f"runs[{index}].checkpoint.from"
        if source == run.name:
            issues.append(Issue(path, "a run cannot continue from itself"))
        elif source not in by_name:
            issues.append(Issue(path, f"no run named {source!r} in this stack"))
        elif not by_name[source][1].checkpoint.save:
            issues.append(Issue(path, f"run {source!r} does not save a checkpoint (checkpoint.save is false)"))
        elif len(by_name[source][1].seeds) != 1:
            issues.append(
                Issue(
                    path,
                    f"run {source!r} sweeps {len(by_name[source][1].seeds)} seeds, so it has one "
                    "checkpoint per seed; continue from one of them with its s3:// URI",
                )
            )
    cycle = _checkpoint_cycle(by_name)
    if cycle:
        issues.append(Issue(f"runs[{by_name[cycle[0]][0]}].checkpoint.from", f"checkpoint chain loops: {' -> '.join(cycle)}"))
    if lint_glue is None:
        from workloads.contract import lint_glue as default_lint

        lint_glue = default_lint
    linted: dict[str, list[str]] = {}
    for index, run in runs:
        if run.glue not in linted:
            linted[run.glue] = lint_glue(base_dir / run.glue)
        issues += [Issue(f"runs[{index}].glue", f"{run.glue}: {problem}") for problem in linted[run.glue]]
    return issues


def _checkpoint_cycle(by_name: dict[str, tuple[int, RunSpec]]) -> list[str]:
    for start in by_name:
        seen = [start]
        current = by_name[start][1].checkpoint.from_run
        while current in by_name:
            if current in seen:
                return [*seen[seen.index(current) :], current]
            seen.append(current)
            current = by_name[current][1].checkpoint.from_run
    return []


def checkpoint_order(runs: Sequence[RunSpec]) -> list[RunSpec]:
    """Runs ordered so that a run comes after the run whose checkpoint it continues from."""
    by_name = {run.name: run for run in runs}
    ordered: list[RunSpec] = []
    placed: set[str] = set()

    def place(run: RunSpec) -> None:
        if run.name in placed:
            return
        source = run.checkpoint.from_run
        if source in by_name:
            place(by_name[source])
        placed.add(run.name)
        ordered.append(run)

    for run in runs:
        place(run)
    return ordered


# ---------------------------------------------------------------------------------------------
# Turning pydantic errors into paths users recognise
# ---------------------------------------------------------------------------------------------


def _issues_from(err: ValidationError, prefix: str, model: type[BaseModel]) -> list[Issue]:
    issues = []
    for error in err.errors(include_url=False):
        loc = error["loc"]
        path = prefix + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = _unknown_key_message(model, loc)
        elif error["type"] == "missing":
            message = "is required"
        issues.append(Issue(path, message))
    return issues


def _unknown_key_message(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    owner = _model_at(model, loc[:-1])
    if owner is None:
        return "unknown key"
    allowed = sorted(f.alias or name for name, f in owner.model_fields.items())
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown key; {hint}allowed keys: {', '.join(allowed)}"


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        match = next((f for n, f in current.model_fields.items() if (f.alias or n) == part), None)
        if match is None:
            return None
        current = _unwrap(match.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    while get_origin(annotation) is not None:
        args = [a for a in get_args(annotation) if a is not type(None)]
        if not args:
            break
        annotation = args[-1] if get_origin(annotation) is dict else args[0]
    return annotation


def load_from_pulumi() -> StackConfig:
    """Read `simfleet:*` from the running stack; a bad file stops the program with a clean message."""
    import os

    import pulumi

    stack = pulumi.get_stack()
    # The offline plan can validate any stack file; it names that file here so errors point at it.
    source = os.environ.get("SIMFLEET_STACK_FILE", f"Pulumi.{stack}.yaml")
    settings = pulumi.Config("simfleet")
    try:
        cfg = load_stack_config(settings.get_object("platform"), settings.get_object("runs"), stack=stack, source=source)
    except ConfigError as err:
        # RunError ends `pulumi up`/`preview` with the message alone: no traceback, non-zero exit.
        raise pulumi.RunError(str(err)) from None
    for warning in cfg.warnings:
        pulumi.log.warn(warning)
    return cfg
