"""Pure rendering of long-running services: ServiceSpec + ServiceContext -> the Kubernetes objects of each service and of their namespace.

No Pulumi, AWS or cluster here: the Services component registers these dicts as pulumi-kubernetes resources (updated in
place, so a changed spec rolls the Deployment), and the tests validate them against the Kubernetes schemas offline.
The role ARN of a service's service account is the one value that is not plain; it is passed through as given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import naming
from config import ServiceSpec, parse_image
from config.services import ROLLOUT_SURGE

SERVICE_UID = 1000  # every service container runs as this uid/gid (Triton's image has its triton-server user at 1000)
CONTAINER = "server"
TMP_DIR = "/tmp"
SHM_DIR = "/dev/shm"
IRSA_ANNOTATION = "eks.amazonaws.com/role-arn"
# AWS Load Balancer Controller (guide/service/nlb, guide/service/annotations): this class hands the Service to the LBC.
NLB_CLASS = "service.k8s.aws/nlb"
INTERNAL_NLB_ANNOTATIONS = {
    # Internal is the LBC's default too; stated so a later default change cannot expose a service to the internet.
    "service.beta.kubernetes.io/aws-load-balancer-scheme": "internal",
    # ip targets: the NLB sends to the pod's VPC address directly (VPC CNI), no NodePort hop.
    "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip",
}
PROBE_PERIOD = {"readiness": 5, "liveness": 10, "startup": 10}
# After this long without losing a replica's worth of load, the HPA removes one replica at a time, at most one per
# five minutes: a GPU replica takes minutes to come back (a node from zero, a multi-GB image, model loading).
SCALE_DOWN_STABILIZATION_SECONDS = 600
SCALE_DOWN_PERIOD_SECONDS = 300
ANYWHERE_BUT_METADATA = {"cidr": "0.0.0.0/0", "except": [naming.INSTANCE_METADATA_CIDR]}


@dataclass(frozen=True)
class ServiceContext:
    """What rendering needs besides the spec: plain values known when the program starts."""

    namespace: str
    registry_url: str  # <account>.dkr.ecr.<region>.amazonaws.com: where bare repo:tag images resolve
    region: str
    kubernetes_version: str
    vpc_cidr: str  # an internal NLB's nodes send from VPC addresses (ip targets do not keep the client's)
    # platform.observability.enabled: the collector scrapes every port named naming.SERVICE_METRICS_PORT_NAME.
    scraped: bool = False


def resolve_image(image: str, registry_url: str) -> str:
    """A bare `repo:tag` is in the stack's ECR; a full URI stays as written (config checked it against the allow-list)."""
    return f"{registry_url}/{image}" if parse_image(image).registry is None else image


def labels(spec: ServiceSpec) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": spec.name,
        "app.kubernetes.io/component": "service",
        "app.kubernetes.io/part-of": "simfleet",
        "app.kubernetes.io/managed-by": "pulumi",
        naming.SERVICE_LABEL: spec.name,
    }


def selector(spec: ServiceSpec) -> dict[str, str]:
    return {naming.SERVICE_LABEL: spec.name}


def _metadata(name: str, spec: ServiceSpec, ctx: ServiceContext, annotations: dict[str, Any] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ctx.namespace, "labels": labels(spec)}
    if annotations:
        meta["annotations"] = annotations
    return meta


def cluster_host(spec: ServiceSpec, ctx: ServiceContext) -> str:
    return f"{spec.name}.{ctx.namespace}.svc"


def service_account(spec: ServiceSpec, ctx: ServiceContext, role_arn: Any = None) -> dict[str, Any]:
    """Its own account; annotated with its own IRSA role when it reads a model repository."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(spec.name, spec, ctx, {IRSA_ANNOTATION: role_arn} if role_arn is not None else None),
        # The server never calls the Kubernetes API. IRSA does not need this token: the EKS pod identity webhook adds
        # its own projected token to pods whose service account carries the role annotation.
        "automountServiceAccountToken": False,
    }


def _env(spec: ServiceSpec, ctx: ServiceContext) -> list[dict[str, str]]:
    env = {"AWS_REGION": ctx.region, "AWS_DEFAULT_REGION": ctx.region}
    if spec.model_repository is not None:
        # Args may say $(MODEL_REPOSITORY): Kubernetes expands it from the container's environment.
        env["MODEL_REPOSITORY"] = spec.model_repository
    if spec.read_only_root_filesystem and "HOME" not in spec.env:
        # With a read-only root, caches that default to $HOME need a writable one.
        env["HOME"] = TMP_DIR
    env.update(spec.env)
    return [{"name": key, "value": value} for key, value in env.items()]


def _resources(spec: ServiceSpec) -> dict[str, Any]:
    requests: dict[str, str] = {"memory": spec.memory}
    # A memory limit equal to the request (the pod never takes memory the scheduler did not reserve) and no CPU limit:
    # CFS throttling adds latency to every request, and the CPU request alone reserves the share and drives the HPA.
    limits: dict[str, str] = {"memory": spec.memory}
    if spec.cpu is not None:
        requests["cpu"] = spec.cpu
    if spec.gpus:
        # Extended resources cannot be overcommitted: request and limit are the same whole number.
        requests[naming.GPU_RESOURCE] = limits[naming.GPU_RESOURCE] = str(spec.gpus)
    return {"requests": requests, "limits": limits}


def _probe(path: str, period: int, failures: int, timeout: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
    }


def startup_failure_threshold(spec: ServiceSpec) -> int:
    """failureThreshold x periodSeconds of the startup probe covers probes.startupTimeout (model loading)."""
    return math.ceil(spec.probes.startup_timeout / PROBE_PERIOD["startup"])


def _scheduling(spec: ServiceSpec) -> dict[str, Any]:
    if not spec.gpus:
        # CPU services share the system nodes with the add-ons; never a GPU node.
        return {"nodeSelector": {naming.NODE_POOL_LABEL: "system"}}
    return {
        # GPU nodes of the service's capacity type: on-demand unless the entry says spot, so a serving replica is not
        # reclaimed with two minutes' notice.
        "nodeSelector": {naming.NODE_POOL_LABEL: "gpu", naming.CAPACITY_TYPE_LABEL: naming.EKS_CAPACITY[spec.capacity]},
        "tolerations": [{"key": naming.GPU_TAINT_KEY, "operator": "Exists", "effect": naming.GPU_TAINT_EFFECT}],
    }


def _spread(spec: ServiceSpec) -> list[dict[str, Any]]:
    # Across zones, then across nodes. ScheduleAnyway: a GPU type may be short in one zone, and a replica that serves
    # from a crowded zone beats one that stays Pending. matchLabelKeys spreads each rollout's new pods on their own.
    return [
        {
            "maxSkew": 1,
            "topologyKey": key,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": selector(spec)},
            "matchLabelKeys": ["pod-template-hash"],
        }
        for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
    ]


def pod_spec(spec: ServiceSpec, ctx: ServiceContext) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": resolve_image(spec.image, ctx.registry_url),
        "ports": [{"name": p.name, "containerPort": p.port, "protocol": "TCP"} for p in spec.ports],
        "env": _env(spec, ctx),
        "resources": _resources(spec),
        # Traffic only while the server says it is ready (Triton: every model loaded).
        "readinessProbe": _probe(spec.probes.readiness_path, PROBE_PERIOD["readiness"], 3, 2),
        # Restart a server that stops answering at all; the startup probe holds this off while models load.
        "livenessProbe": _probe(spec.probes.liveness_path, PROBE_PERIOD["liveness"], 3, 5),
        "startupProbe": _probe(spec.probes.liveness_path, PROBE_PERIOD["startup"], startup_failure_threshold(spec), 5),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": spec.read_only_root_filesystem,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": TMP_DIR}, {"name": "dshm", "mountPath": SHM_DIR}],
    }
    if spec.args:
        container["args"] = list(spec.args)
    return {
        "serviceAccountName": spec.name,
        "automountServiceAccountToken": False,
        # Dozens of services would each add a dozen variables to every pod; clients find services by DNS.
        "enableServiceLinks": False,
        # The restricted Pod Security level the namespace enforces.
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": SERVICE_UID,
            "runAsGroup": SERVICE_UID,
            "fsGroup": SERVICE_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            # Triton copies an S3 model repository into a temporary directory before loading it.
            {"name": "tmp", "emptyDir": {"sizeLimit": spec.scratch_size}},
            # Backends share tensors through /dev/shm; the runtime's default 64 MB is too small for them.
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.shm_size}},
        ],
        "topologySpreadConstraints": _spread(spec),
        **_scheduling(spec),
    }


def deployment(spec: ServiceSpec, ctx: ServiceContext) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(spec.name, spec, ctx),
        "spec": {
            # No `replicas`: the HPA owns the count. Pulumi applies server-side, so a field it never sets stays the
            # HPA's, and `pulumi up` never resets a scaled-out service to one replica.
            "selector": {"matchLabels": selector(spec)},
            # Surge one new pod before taking an old one away: serving capacity never drops below the current count
            # during an update (for a GPU service that briefly needs one more GPU node; config checks the group has it).
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": ROLLOUT_SURGE}},
            # A new GPU node, a multi-GB image pull and model loading all happen before a new pod is ready.
            "progressDeadlineSeconds": 900 + spec.probes.startup_timeout,
            "revisionHistoryLimit": 5,
            "template": {"metadata": {"labels": labels(spec)}, "spec": pod_spec(spec, ctx)},
        },
    }


def service(spec: ServiceSpec, ctx: ServiceContext) -> dict[str, Any]:
    ports = [{"name": p.name, "port": p.port, "targetPort": p.name, "protocol": "TCP"} for p in spec.ports]
    lb = spec.expose.internal_load_balancer
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(spec.name, spec, ctx, dict(INTERNAL_NLB_ANNOTATIONS) if lb is not None else None),
        "spec": {"type": "ClusterIP", "selector": selector(spec), "ports": ports},
    }
    if lb is not None:
        body["spec"].update(
            {
                "type": "LoadBalancer",
                "loadBalancerClass": NLB_CLASS,
                # The LBC puts these on the NLB's security group; never 0.0.0.0/0 (config refuses it).
                "loadBalancerSourceRanges": [str(cidr) for cidr in lb.allowed_cidrs],
                # ip targets reach the pods directly; node ports would only open every node to the NLB.
                "allocateLoadBalancerNodePorts": False,
            }
        )
    return body


def autoscaler(spec: ServiceSpec, ctx: ServiceContext) -> dict[str, Any]:
    if spec.autoscale.pods is not None:
        metric: dict[str, Any] = {
            "type": "Pods",
            "pods": {
                "metric": {"name": spec.autoscale.pods.metric},
                "target": {"type": "AverageValue", "averageValue": spec.autoscale.pods.target},
            },
        }
    else:
        metric = {
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": spec.autoscale.cpu}},
        }
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(spec.name, spec, ctx),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.name},
            "minReplicas": spec.replicas.min,
            "maxReplicas": spec.replicas.max,
            "metrics": [metric],
            "behavior": {
                "scaleDown": {
                    "stabilizationWindowSeconds": SCALE_DOWN_STABILIZATION_SECONDS,
                    "policies": [{"type": "Pods", "value": 1, "periodSeconds": SCALE_DOWN_PERIOD_SECONDS}],
                }
            },
        },
    }


def disruption_budget(spec: ServiceSpec, ctx: ServiceContext) -> dict[str, Any]:
    """At most one replica evicted at a time, whatever the HPA has scaled to.

    maxUnavailable 1 rather than a minAvailable count: a count fixed at replicas.min - 1 would let a drain take every
    replica above min at once after a scale-out, and minAvailable = replicas.min would block every node drain (node
    upgrades, autoscaler scale-down) of a one-replica service forever. The price: a one-replica service is briefly
    down while its node drains; set replicas.min: 2 to avoid that.
    """
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(spec.name, spec, ctx),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector(spec)},
            # A crash-looping pod must not hold up a drain: it serves nothing anyway.
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def metrics_port(spec: ServiceSpec) -> int | None:
    """The port the collector scrapes (the one named naming.SERVICE_METRICS_PORT_NAME), if the service has one."""
    return next((p.port for p in spec.ports if p.name == naming.SERVICE_METRICS_PORT_NAME), None)


def ingress_policy(spec: ServiceSpec, ctx: ServiceContext) -> dict[str, Any] | None:
    """The service's ports, from its declared clients (and the VPC for an internal NLB), and its metrics port from the
    collector alone; None when nobody may connect."""
    rules: list[dict[str, Any]] = []
    scrape = metrics_port(spec) if ctx.scraped else None
    if scrape is not None:
        rules.append({"from": [naming.collector_peer()], "ports": [{"port": scrape, "protocol": "TCP"}]})
    peers: list[dict[str, Any]] = []
    for client in spec.clients:
        # Namespace and pod selector in ONE peer: those pods of that namespace, nothing else.
        peer: dict[str, Any] = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": client.namespace}}}
        if client.pod_selector:
            peer["podSelector"] = {"matchLabels": dict(client.pod_selector)}
        peers.append(peer)
    if spec.expose.internal_load_balancer is not None:
        # With ip targets the NLB connects from its own VPC addresses; who may reach the NLB is decided by its security
        # group (loadBalancerSourceRanges).
        peers.append({"ipBlock": {"cidr": ctx.vpc_cidr}})
    if peers:
        rules.insert(0, {"from": peers, "ports": [{"port": p.port, "protocol": "TCP"} for p in spec.ports]})
    if not rules:
        return None
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(f"{spec.name}-ingress", spec, ctx),
        "spec": {
            "podSelector": {"matchLabels": selector(spec)},
            "policyTypes": ["Ingress"],
            "ingress": rules,
        },
    }


def render_service(spec: ServiceSpec, ctx: ServiceContext, role_arn: Any = None) -> list[dict[str, Any]]:
    """One service's objects in apply order: its account and ingress rule before its pods, the Service, HPA and PDB after."""
    policy = ingress_policy(spec, ctx)
    objects = [service_account(spec, ctx, role_arn)]
    if policy is not None:
        objects.append(policy)
    return [*objects, deployment(spec, ctx), service(spec, ctx), autoscaler(spec, ctx), disruption_budget(spec, ctx)]


def network_policy(namespace: Any, name: str, spec: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": spec,
    }


def guard_policies(namespace: Any, labels: dict[str, str]) -> list[dict[str, Any]]:
    """A namespace's baseline: default deny both ways, then DNS (CoreDNS only) and HTTPS anywhere but the instance
    metadata service out (S3, STS for IRSA, CloudWatch), so no pod can fall back to the node role's credentials.
    Shared by the services namespace and the collector's (components/collector.py)."""
    every_pod: dict[str, Any] = {}
    dns = {
        "to": [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ],
        "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
    }
    https = {"to": [{"ipBlock": ANYWHERE_BUT_METADATA}], "ports": [{"port": 443, "protocol": "TCP"}]}
    return [
        network_policy(namespace, "default-deny", {"podSelector": every_pod, "policyTypes": ["Ingress", "Egress"]}, labels),
        network_policy(namespace, "allow-dns", {"podSelector": every_pod, "policyTypes": ["Egress"], "egress": [dns]}, labels),
        network_policy(
            namespace, "allow-https-egress", {"podSelector": every_pod, "policyTypes": ["Egress"], "egress": [https]}, labels
        ),
    ]


def namespace_objects(ctx: ServiceContext, pod_security: dict[str, str]) -> list[dict[str, Any]]:
    """The services namespace (Pod Security `restricted`), default deny both ways, DNS and HTTPS (S3, STS) out."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": ctx.namespace,
                "labels": {"app.kubernetes.io/part-of": "simfleet", "app.kubernetes.io/managed-by": "pulumi", **pod_security},
            },
        },
        *guard_policies(ctx.namespace, {"app.kubernetes.io/part-of": "simfleet"}),
    ]
