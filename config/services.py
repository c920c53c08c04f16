"""`simfleet:services`: long-running inference services (Deployment, Service, HPA, PDB), and the rules that need the platform."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema, field_validator, model_validator

from config.errors import Issue
from config.fit import gpus_per_node_issue, node_fit_issues
from config.platform import PlatformConfig
from config.types import (
    LABEL_VALUE_RE,
    RUN_NAME_RE,
    CapacityType,
    Duration,
    ImageString,
    Model,
    Quantity,
    RestrictedCidr,
    image_source_problem,
    quantity_value,
    s3_prefix,
)

PortName = Literal["http", "grpc", "metrics"]
# Triton's defaults (RadStream's deploy_manifest: HTTP 8000, gRPC 8001, Prometheus metrics 8002).
TRITON_PORTS: tuple[tuple[PortName, int], ...] = (("http", 8000), ("grpc", 8001), ("metrics", 8002))
TRITON_READY_PATH = "/v2/health/ready"
TRITON_LIVE_PATH = "/v2/health/live"

# Kubernetes qualified names for label keys: an optional DNS-subdomain prefix and a name of at most 63 characters.
QUALIFIED_LABEL_KEY_RE = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
METRIC_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
# Set by simfleet on every service container (workloads/renderers/service.py) or by the EKS pod identity webhook (the
# two AWS_ web identity variables); a service's own `env` may not override them.
RESERVED_ENV = ("MODEL_REPOSITORY", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")
SERVICE_NAME_MAX = 50
# Extra replicas a rolling update starts before it stops an old one: the Deployment's maxSurge
# (workloads/renderers/service.py). Counted in the node group fit below and in the queue arithmetic (config/capacity.py).
ROLLOUT_SURGE = 1


class ServicePort(Model):
    name: PortName = Field(description="http (probes and REST), grpc, or metrics.")
    port: int = Field(ge=1, le=65535, description="Container port; the Service exposes the same number.")


def _triton_ports() -> list[ServicePort]:
    return [ServicePort(name=name, port=port) for name, port in TRITON_PORTS]


class Replicas(Model):
    min: int = Field(1, ge=1, description="Replicas that always run (the HPA's minReplicas).")
    max: int = Field(1, ge=1, le=100, description="Replicas the HPA may scale to.")

    @model_validator(mode="after")
    def _order(self) -> Replicas:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class PodsMetric(Model):
    metric: str = Field(description="Per-pod metric served by custom.metrics.k8s.io (a metrics adapter).")
    target: Quantity = Field(description="Average value per pod the HPA aims for.")

    @field_validator("metric")
    @classmethod
    def _metric_name(cls, metric: str) -> str:
        if not METRIC_NAME_RE.match(metric):
            raise ValueError(f"{metric!r} is not a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)")
        return metric


class Autoscale(Model):
    """Exactly one of `cpu` (average CPU utilisation in percent of the request) or `pods` (a custom per-pod metric)."""

    cpu: int | None = Field(None, ge=1, le=100, description="Target average CPU utilisation, percent of the CPU request.")
    pods: PodsMetric | None = Field(None, description="Target average of a per-pod custom metric (needs a metrics adapter).")

    @model_validator(mode="after")
    def _one(self) -> Autoscale:
        if (self.cpu is None) == (self.pods is None):
            raise ValueError("set exactly one of cpu (a utilisation percent) or pods ({metric, target})")
        return self


def _default_autoscale() -> Autoscale:
    return Autoscale(cpu=70)


class InternalLoadBalancer(Model):
    allowed_cidrs: list[RestrictedCidr] = Field(
        min_length=1, description="Private networks (the VPC, VPN, peered VPCs) that may reach the internal NLB."
    )


class Expose(Model):
    """How clients reach the service: inside the cluster only (the default), or through an internal NLB too."""

    internal_load_balancer: InternalLoadBalancer | None = Field(
        None, description="An internal NLB (AWS Load Balancer Controller, ip targets) limited to allowedCidrs."
    )

    @property
    def kind(self) -> Literal["cluster", "internalLoadBalancer"]:
        return "cluster" if self.internal_load_balancer is None else "internalLoadBalancer"


def _expose(value: Any) -> Any:
    if value == "cluster":
        return {}
    if isinstance(value, str):
        raise ValueError(f"{value!r}: expose is 'cluster' or {{internalLoadBalancer: {{allowedCidrs: [...]}}}}")
    return value


ExposeField = Annotated[
    Expose,
    BeforeValidator(_expose),
    WithJsonSchema(
        {
            "anyOf": [
                {"const": "cluster", "description": "A ClusterIP Service: reachable from inside the cluster only."},
                {
                    "type": "object",
                    "properties": {
                        "internalLoadBalancer": {
                            "type": "object",
                            "properties": {"allowedCidrs": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
                            "required": ["allowedCidrs"],
                            "additionalProperties": False,
                        }
                    },
                    "required": ["internalLoadBalancer"],
                    "additionalProperties": False,
                },
            ]
        }
    ),
]


class ServiceClient(Model):
    """Pods allowed to connect: every pod of `namespace`, or those matching `podSelector` there."""

    namespace: str = Field(description="Namespace of the clients, e.g. simfleet-runs.")
    pod_selector: dict[str, str] = Field(default_factory=dict, description="matchLabels; empty means every pod.")

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, namespace: str) -> str:
        if not re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", namespace) or len(namespace) > 63:
            raise ValueError(f"{namespace!r} is not a namespace name (a DNS-1123 label)")
        return namespace

    @field_validator("pod_selector")
    @classmethod
    def _selector(cls, selector: dict[str, str]) -> dict[str, str]:
        problems: list[str] = []
        for key, value in selector.items():
            if not QUALIFIED_LABEL_KEY_RE.match(key):
                problems.append(f"{key!r} is not a label key")
            if not LABEL_VALUE_RE.match(value) or len(value) > 63:
                problems.append(f"{key}: {value!r} is not a label value")
        if problems:
            raise ValueError("; ".join(problems))
        return selector


class Probes(Model):
    """HTTP probes on the `http` port. The defaults are Triton's health endpoints."""

    readiness_path: str = Field(TRITON_READY_PATH, description="Traffic goes to a pod only while this answers 200.")
    liveness_path: str = Field(TRITON_LIVE_PATH, description="The container restarts when this stops answering.")
    startup_timeout: Duration = Field(
        600,
        ge=30,
        le=3600,
        description="How long the liveness path may take to answer for the first time (model loading); liveness and "
        "readiness probes start after it does.",
    )

    @field_validator("readiness_path", "liveness_path")
    @classmethod
    def _path(cls, path: str) -> str:
        if not path.startswith("/") or any(c.isspace() for c in path):
            raise ValueError(f"{path!r} must be an absolute URL path like /v2/health/ready")
        return path


class ServiceSpec(Model):
    name: str = Field(description=f"DNS-1123 label starting with a letter, at most {SERVICE_NAME_MAX} characters.")
    enabled: bool = Field(
        True,
        description="false: the entry is validated but not deployed (no pods, no GPUs held, nothing in the queue "
        "arithmetic or the idle cost); turning it off removes a deployed service.",
    )
    image: ImageString = Field(description="repo:tag from the stack's ECR, or a full URI under platform.imageAllowList.")
    args: list[str] = Field(
        default_factory=list, description="Container args; $(MODEL_REPOSITORY) expands to the model repository URI."
    )
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables.")
    ports: list[ServicePort] = Field(default_factory=_triton_ports, min_length=1, description="Named container ports.")
    gpus: int = Field(0, ge=0, le=8, description="nvidia.com/gpu per replica (request = limit); 0 runs on system nodes.")
    cpu: Quantity | None = Field("2", description="CPU request per replica (no limit: throttling hurts latency).")
    memory: Quantity = Field("8Gi", description="Memory per replica; the limit equals the request.")
    shm_size: Quantity = Field("1Gi", description="Memory-backed /dev/shm; counts toward the memory limit.")
    scratch_size: Quantity = Field("20Gi", description="Size limit of the /tmp emptyDir (Triton copies S3 models there).")
    replicas: Replicas = Field(default_factory=Replicas)
    autoscale: Autoscale = Field(default_factory=_default_autoscale)
    model_repository: str | None = Field(
        None, description="s3://bucket/prefix/ the service reads its models from, read-only, through its own IAM role."
    )
    expose: ExposeField = Field(default_factory=Expose)
    clients: list[ServiceClient] = Field(default_factory=list, description="Pods allowed to connect to the ports.")
    probes: Probes = Field(default_factory=Probes)
    capacity: CapacityType = Field(
        "onDemand", description="GPU capacity type; serving takes no spot interruptions unless this says spot."
    )
    read_only_root_filesystem: bool = Field(
        True, description="false for images that write outside /tmp and /dev/shm (say why in the stack file)."
    )

    @field_validator("model_repository")
    @classmethod
    def _repository(cls, uri: str | None) -> str | None:
        return None if uri is None else s3_prefix(uri)

    def problems(self) -> list[Issue]:
        """Rules across this entry's fields, each with the path (relative to the entry) of the value to change.

        They run after the fields parse (load_stack_config calls this), so one bad entry reports all of them at once,
        each pointing at its own key (`ports[1].name`, `env.AWS_REGION`), not at the whole entry.
        """
        found: list[Issue] = []
        if not RUN_NAME_RE.match(self.name) or len(self.name) > SERVICE_NAME_MAX:
            found.append(
                Issue(
                    "name",
                    f"{self.name!r} must be a DNS-1123 label that starts with a letter and has at most {SERVICE_NAME_MAX} "
                    "characters (the Deployment, Service and DNS names are built from it)",
                )
            )
        names: dict[str, int] = {}
        numbers: dict[int, int] = {}
        for i, port in enumerate(self.ports):
            if port.name in names:
                found.append(Issue(f"ports[{i}].name", f"{port.name!r} is already used by ports[{names[port.name]}]"))
            names.setdefault(port.name, i)
            if port.port in numbers:
                found.append(Issue(f"ports[{i}].port", f"{port.port} is already used by ports[{numbers[port.port]}]"))
            numbers.setdefault(port.port, i)
        if "http" not in names:
            found.append(Issue("ports", "an http port is required: the readiness, liveness and startup probes use it"))
        for key in self.env:
            if not ENV_NAME_RE.match(key):
                found.append(Issue(f"env.{key}", f"{key!r} is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"))
            elif key in RESERVED_ENV:
                found.append(Issue(f"env.{key}", f"{key} is set by simfleet or by IRSA; choose another name"))
        if self.autoscale.cpu is not None and self.cpu is None:
            found.append(Issue("cpu", "autoscale.cpu is a percent of the CPU request, so the service needs a cpu request"))
        if quantity_value(self.shm_size) >= quantity_value(self.memory):
            found.append(
                Issue("shmSize", f"{self.shm_size} must be smaller than memory ({self.memory}): /dev/shm counts toward it")
            )
        if self.gpus == 0 and self.capacity == "spot":
            found.append(Issue("capacity", "spot applies to GPU services only; CPU services run on the on-demand system nodes"))
        return found

    @property
    def port_numbers(self) -> dict[str, int]:
        return {p.name: p.port for p in self.ports}


def service_platform_rules(platform: PlatformConfig, services: Iterable[tuple[int, ServiceSpec]]) -> list[Issue]:
    """Rules that need the platform: image source, GPU supply and node shape, the metrics adapter, private NLB ranges."""
    issues: list[Issue] = []
    gpu = platform.node_groups.gpu
    for index, service in services:
        path = f"services[{index}]"
        problem = image_source_problem(service.image, platform.repositories, platform.image_allow_list)
        if problem:
            issues.append(Issue(f"{path}.image", problem))
        if service.autoscale.pods is not None and not platform.metrics_adapter:
            issues.append(
                Issue(
                    f"{path}.autoscale.pods",
                    "autoscaling on a pods metric needs a metrics adapter serving custom.metrics.k8s.io, which simfleet "
                    "does not install; install one (e.g. prometheus-adapter) and set platform.metricsAdapter: true, or "
                    "use autoscale: {cpu: <percent>}",
                )
            )
        lb = service.expose.internal_load_balancer
        if lb is not None:
            public = [str(c) for c in lb.allowed_cidrs if not c.is_private]
            if public:
                issues.append(
                    Issue(
                        f"{path}.expose.internalLoadBalancer.allowedCidrs",
                        f"{public} are not private ranges: an internal NLB is reached only from the VPC and networks "
                        "connected to it",
                    )
                )
        if service.gpus == 0:
            issues += node_fit_issues(path, service.cpu, service.memory, platform, "system")
            continue
        if service.capacity not in gpu.capacity:
            issues.append(
                Issue(
                    f"{path}.capacity",
                    f"the stack has no {service.capacity} GPU node group; add {service.capacity} to "
                    "platform.nodeGroups.gpu.capacity or change the service's capacity",
                )
            )
        per_node = gpu.gpus_per_node
        too_many = gpus_per_node_issue(path, service.gpus, gpu)
        if too_many:
            issues.append(too_many)
            continue
        issues += node_fit_issues(path, service.cpu, service.memory, platform, "GPU")
        # A rolling update surges one replica above the current count, so max + 1 replicas must fit the group.
        replicas_per_node = per_node // service.gpus
        nodes = math.ceil((service.replicas.max + ROLLOUT_SURGE) / replicas_per_node)
        if nodes > gpu.max_size:
            issues.append(
                Issue(
                    f"{path}.replicas.max",
                    f"{service.replicas.max} replicas plus one during a rolling update need {nodes} GPU nodes, but the "
                    f"{service.capacity} GPU group's maxSize is {gpu.max_size}; raise platform.nodeGroups.gpu.maxSize "
                    "or lower replicas.max",
                )
            )
    return issues


def service_warnings(services: Iterable[tuple[int, ServiceSpec]]) -> list[Issue]:
    """Valid but probably not meant: a service nothing may connect to (its namespace denies all ingress by default)."""
    return [
        Issue(
            f"services[{index}].clients",
            f"empty and expose is cluster, so nothing can connect to {service.name!r} (the services namespace denies "
            "all ingress); list its clients, e.g. [{namespace: simfleet-runs}]",
        )
        for index, service in services
        if not service.clients and service.expose.internal_load_balancer is None
    ]
