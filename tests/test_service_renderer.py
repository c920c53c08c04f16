"""Service renderers: pure, table-tested, and every object valid for the cluster's Kubernetes version (strict)."""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from kubernetes_validate.utils import all_versions, major_minor

import naming
from components.access import prefix_read_policy
from components.runs_namespace import pod_security_labels
from config import ServiceSpec
from config.sources import load_yaml
from policies.rules.pods import restricted_pod_problems
from workloads.renderers.service import (
    INTERNAL_NLB_ANNOTATIONS,
    IRSA_ANNOTATION,
    NLB_CLASS,
    ServiceContext,
    ingress_policy,
    metrics_port,
    namespace_objects,
    render_service,
    resolve_image,
)

ROOT = Path(__file__).resolve().parent.parent
DEV = load_yaml((ROOT / "Pulumi.dev.yaml").read_text())["config"]
STACK_VERSION = DEV["simfleet:platform"]["kubernetesVersion"]
REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
CTX = ServiceContext(
    namespace=naming.SERVICES_NAMESPACE,
    registry_url=REGISTRY,
    region="us-east-1",
    kubernetes_version=STACK_VERSION,
    vpc_cidr="10.40.0.0/16",
)
ROLE = "arn:aws:iam::123456789012:role/radstream"


def _schema_version(stack_version: str) -> str:
    """The newest schema set kubernetes-validate ships that is not newer than the stack's Kubernetes."""
    wanted = tuple(int(p) for p in stack_version.split("."))
    candidates = [major_minor(v) for v in all_versions() if tuple(int(p) for p in major_minor(v).split(".")) <= wanted]
    return max(candidates, key=lambda v: tuple(int(p) for p in v.split(".")))


SCHEMA_VERSION = _schema_version(STACK_VERSION)


def spec(**changes: Any) -> ServiceSpec:
    raw = copy.deepcopy(DEV["simfleet:services"][0])
    raw.update(changes)
    return ServiceSpec.model_validate(raw)


# The dev service and variants that take every other branch of the renderers.
CASES: dict[str, ServiceSpec] = {
    "dev-triton": spec(),
    "cpu-only": spec(name="tokenizer", gpus=0, cpu="500m", memory="1Gi", shmSize="64Mi", modelRepository=None),
    "internal-nlb": spec(name="public-ish", expose={"internalLoadBalancer": {"allowedCidrs": ["10.60.0.0/16"]}}),
    "pods-metric": spec(name="queue", autoscale={"pods": {"metric": "nv_inference_queue_duration_us", "target": "500k"}}),
    "read-only-root": spec(name="strict", readOnlyRootFilesystem=True, env={"LOG_VERBOSE": "1"}),
    "no-clients": spec(name="lonely", clients=[]),
    "selected-clients": spec(name="picky", clients=[{"namespace": "simfleet-runs", "podSelector": {"simfleet.io/run": "a"}}]),
    "spot": spec(name="cheap", capacity="spot"),
}


def objects(case: str) -> list[dict[str, Any]]:
    return render_service(CASES[case], CTX, ROLE)


def by_kind(case: str) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in objects(case)}


def container(case: str) -> dict[str, Any]:
    [main] = by_kind(case)["Deployment"]["spec"]["template"]["spec"]["containers"]
    return main


def test_validation_uses_the_stack_kubernetes_version() -> None:
    assert SCHEMA_VERSION == STACK_VERSION or STACK_VERSION not in {major_minor(v) for v in all_versions()}


@pytest.mark.parametrize("case", CASES)
def test_every_object_passes_strict_validation(case: str) -> None:
    for obj in objects(case) + namespace_objects(CTX, pod_security_labels(STACK_VERSION)):
        kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)


@pytest.mark.parametrize("case", CASES)
def test_objects_come_in_apply_order_and_all_live_in_the_services_namespace(case: str) -> None:
    kinds = [o["kind"] for o in objects(case)]
    expected = ["ServiceAccount", "NetworkPolicy", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"]
    if case == "no-clients":
        expected.remove("NetworkPolicy")
    assert kinds == expected
    assert {o["metadata"]["namespace"] for o in objects(case)} == {naming.SERVICES_NAMESPACE}
    for obj in objects(case):
        assert obj["metadata"]["labels"][naming.SERVICE_LABEL] == CASES[case].name


def test_dev_service_ports_and_probes_are_tritons() -> None:
    main = container("dev-triton")
    assert [(p["name"], p["containerPort"]) for p in main["ports"]] == [("http", 8000), ("grpc", 8001), ("metrics", 8002)]
    service = by_kind("dev-triton")["Service"]
    assert service["spec"]["type"] == "ClusterIP"
    assert [(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [
        ("http", 8000, "http"),
        ("grpc", 8001, "grpc"),
        ("metrics", 8002, "metrics"),
    ]
    assert main["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert main["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    startup = main["startupProbe"]
    assert startup["httpGet"]["path"] == "/v2/health/live"
    # Generous for model loading: failureThreshold x period covers probes.startupTimeout (10 minutes by default).
    assert startup["failureThreshold"] * startup["periodSeconds"] >= CASES["dev-triton"].probes.startup_timeout == 600


@pytest.mark.parametrize("case", CASES)
def test_resources_gpu_request_equals_limit_memory_limit_equals_request_no_cpu_limit(case: str) -> None:
    resources = container(case)["resources"]
    service = CASES[case]
    assert resources["limits"]["memory"] == resources["requests"]["memory"] == service.memory
    assert "cpu" not in resources["limits"]
    if service.gpus:
        assert resources["requests"][naming.GPU_RESOURCE] == resources["limits"][naming.GPU_RESOURCE] == str(service.gpus)
    else:
        assert naming.GPU_RESOURCE not in resources["requests"] and naming.GPU_RESOURCE not in resources["limits"]


@pytest.mark.parametrize("case", CASES)
def test_pods_meet_the_restricted_pod_security_standard(case: str) -> None:
    pod = by_kind(case)["Deployment"]["spec"]["template"]["spec"]
    assert restricted_pod_problems(pod) == []
    main = container(case)
    assert main["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert main["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False and pod["serviceAccountName"] == CASES[case].name
    mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
    assert mounts == {"/tmp": "tmp", "/dev/shm": "dshm"}
    volumes = {v["name"]: v["emptyDir"] for v in pod["volumes"]}
    assert volumes["dshm"]["medium"] == "Memory"


def test_read_only_root_where_the_image_allows_with_a_writable_home() -> None:
    assert container("read-only-root")["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"]: e["value"] for e in container("read-only-root")["env"]}
    assert env["HOME"] == "/tmp" and env["LOG_VERBOSE"] == "1"
    # The dev Triton opts out (its stack file says why), and then HOME is left to the image.
    assert container("dev-triton")["securityContext"]["readOnlyRootFilesystem"] is False
    assert "HOME" not in {e["name"] for e in container("dev-triton")["env"]}


def test_environment_and_image() -> None:
    env = {e["name"]: e["value"] for e in container("dev-triton")["env"]}
    assert env["MODEL_REPOSITORY"] == "s3://example-radstream-models/models/radstream/"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert container("dev-triton")["args"] == ["tritonserver", "--model-repository=$(MODEL_REPOSITORY)"]
    assert container("dev-triton")["image"] == f"{REGISTRY}/triton:26.02-py3"
    assert resolve_image("nvcr.io/nvidia/tritonserver:26.02-py3", REGISTRY) == "nvcr.io/nvidia/tritonserver:26.02-py3"
    assert "MODEL_REPOSITORY" not in {e["name"] for e in container("cpu-only")["env"]}


def test_scheduling_gpu_on_demand_spot_when_asked_cpu_on_system_nodes() -> None:
    gpu = by_kind("dev-triton")["Deployment"]["spec"]["template"]["spec"]
    assert gpu["nodeSelector"] == {naming.NODE_POOL_LABEL: "gpu", naming.CAPACITY_TYPE_LABEL: "ON_DEMAND"}
    assert gpu["tolerations"] == [{"key": naming.GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}]
    assert by_kind("spot")["Deployment"]["spec"]["template"]["spec"]["nodeSelector"][naming.CAPACITY_TYPE_LABEL] == "SPOT"
    cpu = by_kind("cpu-only")["Deployment"]["spec"]["template"]["spec"]
    assert cpu["nodeSelector"] == {naming.NODE_POOL_LABEL: "system"} and "tolerations" not in cpu
    keys = [c["topologyKey"] for c in gpu["topologySpreadConstraints"]]
    assert keys == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    assert all(
        c["labelSelector"]["matchLabels"] == {naming.SERVICE_LABEL: "radstream-triton"} for c in gpu["topologySpreadConstraints"]
    )


def test_rolling_update_never_drops_below_the_current_count_and_leaves_replicas_to_the_hpa() -> None:
    deployment = by_kind("dev-triton")["Deployment"]["spec"]
    assert deployment["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    assert "replicas" not in deployment
    assert deployment["selector"]["matchLabels"].items() <= deployment["template"]["metadata"]["labels"].items()


def test_hpa_cpu_and_pods_metrics_with_a_slow_scale_down() -> None:
    hpa = by_kind("dev-triton")["HorizontalPodAutoscaler"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 2)
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "radstream-triton"}
    assert hpa["metrics"] == [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}
    ]
    assert hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300
    pods = by_kind("pods-metric")["HorizontalPodAutoscaler"]["spec"]["metrics"]
    assert pods == [
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "nv_inference_queue_duration_us"},
                "target": {"type": "AverageValue", "averageValue": "500k"},
            },
        }
    ]


def test_pdb_lets_one_replica_go_at_a_time() -> None:
    pdb = by_kind("dev-triton")["PodDisruptionBudget"]["spec"]
    assert pdb["maxUnavailable"] == 1 and "minAvailable" not in pdb
    assert pdb["selector"]["matchLabels"] == {naming.SERVICE_LABEL: "radstream-triton"}


def test_internal_nlb_through_the_load_balancer_controller() -> None:
    service = by_kind("internal-nlb")["Service"]
    assert (
        service["spec"]["type"] == "LoadBalancer" and service["spec"]["loadBalancerClass"] == NLB_CLASS == "service.k8s.aws/nlb"
    )
    assert service["metadata"]["annotations"] == INTERNAL_NLB_ANNOTATIONS
    assert INTERNAL_NLB_ANNOTATIONS["service.beta.kubernetes.io/aws-load-balancer-scheme"] == "internal"
    assert INTERNAL_NLB_ANNOTATIONS["service.beta.kubernetes.io/aws-load-balancer-nlb-target-type"] == "ip"
    assert service["spec"]["loadBalancerSourceRanges"] == ["10.60.0.0/16"]
    peers = by_kind("internal-nlb")["NetworkPolicy"]["spec"]["ingress"][0]["from"]
    assert {"ipBlock": {"cidr": "10.40.0.0/16"}} in peers  # the NLB's own VPC addresses (ip targets)
    assert "annotations" not in by_kind("dev-triton")["Service"]["metadata"]


def test_ingress_only_from_declared_clients_on_the_service_ports() -> None:
    policy = by_kind("dev-triton")["NetworkPolicy"]
    assert policy["metadata"]["name"] == "radstream-triton-ingress"
    assert policy["spec"]["podSelector"] == {"matchLabels": {naming.SERVICE_LABEL: "radstream-triton"}}
    [rule] = policy["spec"]["ingress"]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "simfleet-runs"}}}]
    assert [p["port"] for p in rule["ports"]] == [8000, 8001, 8002]
    [picky] = by_kind("selected-clients")["NetworkPolicy"]["spec"]["ingress"][0]["from"]
    assert picky["podSelector"] == {"matchLabels": {"simfleet.io/run": "a"}}


def test_the_collector_may_reach_the_metrics_port_and_only_that() -> None:
    scraped = replace(CTX, scraped=True)
    policy = ingress_policy(spec(), scraped)
    assert policy is not None
    clients, collector = policy["spec"]["ingress"]
    assert [p["port"] for p in clients["ports"]] == [8000, 8001, 8002]  # the declared clients, unchanged
    assert collector == {"from": [naming.collector_peer()], "ports": [{"port": 8002, "protocol": "TCP"}]}
    assert metrics_port(spec()) == 8002
    # A service nobody calls still admits the collector on its metrics port; one without such a port, nobody.
    alone = ingress_policy(spec(clients=[]), scraped)
    assert alone is not None and alone["spec"]["ingress"] == [collector]
    unscraped = spec(clients=[], ports=[{"name": "http", "port": 8000}])
    assert metrics_port(unscraped) is None and ingress_policy(unscraped, scraped) is None
    # Without the collector (observability off), no rule for it.
    assert len(ingress_policy(spec(), CTX)["spec"]["ingress"]) == 1  # type: ignore[index]
    kubernetes_validate.validate(policy, SCHEMA_VERSION, strict=True)


def test_service_account_carries_its_own_role() -> None:
    account = by_kind("dev-triton")["ServiceAccount"]
    assert account["metadata"]["annotations"] == {IRSA_ANNOTATION: ROLE}
    assert account["automountServiceAccountToken"] is False
    bare = render_service(CASES["cpu-only"], CTX, None)[0]
    assert "annotations" not in bare["metadata"]


def test_namespace_denies_by_default_and_allows_only_dns_and_https_out() -> None:
    ns, deny, dns, https = namespace_objects(CTX, pod_security_labels(STACK_VERSION))
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    assert [p["port"] for p in dns["spec"]["egress"][0]["ports"]] == [53, 53]
    [rule] = https["spec"]["egress"]
    assert rule["ports"] == [{"port": 443, "protocol": "TCP"}]
    assert rule["to"] == [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]}}]


def test_model_repository_policy_reads_only_under_the_prefix() -> None:
    policy = prefix_read_policy("aws", "s3://example-radstream-models/models/radstream/", "Models", head_bucket=True)
    read, listing, head_bucket = policy["Statement"]
    assert read["Action"] == ["s3:GetObject"]
    assert read["Resource"] == ["arn:aws:s3:::example-radstream-models/models/radstream/*"]
    assert listing["Action"] == ["s3:ListBucket"] and listing["Resource"] == ["arn:aws:s3:::example-radstream-models"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["models/radstream/*"]}}
    # HeadBucket (Triton's first call) carries no prefix: only requests without the key pass this one.
    assert head_bucket["Resource"] == listing["Resource"] and head_bucket["Condition"] == {"Null": {"s3:prefix": "true"}}
    assert {a for s in policy["Statement"] for a in s["Action"]} == {"s3:GetObject", "s3:ListBucket"}
    # A reader that never calls HeadBucket (a dataset import's `aws s3 sync`) gets the two prefixed statements only.
    assert prefix_read_policy("aws", "s3://example-radstream-models/models/radstream/", "Models")["Statement"] == [read, listing]
    for bad in ("s3://bucket-1/models", "s3://bucket-1/*/", "https://bucket-1/models/"):
        with pytest.raises(ValueError):
            prefix_read_policy("aws", bad, "Models")
    assert prefix_read_policy("aws-cn", "s3://b-1/m/", "Models")["Statement"][0]["Resource"] == ["arn:aws-cn:s3:::b-1/m/*"]


def test_startup_budget_follows_the_config() -> None:
    slow = spec(name="slow", probes={"startupTimeout": "25m"})
    main = render_service(slow, CTX)[2]["spec"]["template"]["spec"]["containers"][0]
    assert main["startupProbe"]["failureThreshold"] == math.ceil(25 * 60 / main["startupProbe"]["periodSeconds"])
    assert render_service(slow, CTX)[2]["spec"]["progressDeadlineSeconds"] > 25 * 60
