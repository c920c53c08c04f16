"""`simfleet:services` and the new platform keys: defaults, every malformed entry with its path, several at once."""

from __future__ import annotations

import copy
import datetime
import functools
from pathlib import Path
from typing import Any

import pytest

from config import ConfigError, ServiceSpec, load_stack_config, workload_names
from config.services import TRITON_LIVE_PATH, TRITON_READY_PATH
from config.sources import load_yaml

ROOT = Path(__file__).resolve().parent.parent
TODAY = datetime.date(2026, 11, 23)


@functools.cache
def _dev() -> dict[str, Any]:
    config: dict[str, Any] = load_yaml((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    return config


def dev() -> dict[str, Any]:
    """The dev stack's config, a copy of its own: parsed once (collection calls this for every parameter)."""
    return copy.deepcopy(_dev())


def load(config: dict[str, Any], stack: str = "dev", offline: bool = True):
    return load_stack_config(
        config.get("simfleet:platform"),
        config.get("simfleet:runs"),
        services=config.get("simfleet:services"),
        stack=stack,
        source=f"Pulumi.{stack}.yaml",
        today=TODAY,
        offline=offline,
    )


def errors(config: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(config)
    return [f"{i.path}: {i.message}" for i in caught.value.issues]


def triton(**changes: Any) -> dict[str, Any]:
    """The dev sample's service, turned on (the sample ships it off)."""
    entry = copy.deepcopy(dev()["simfleet:services"][0])
    entry.update({"enabled": True, **changes})
    return entry


def with_services(*entries: dict[str, Any], **platform: Any) -> dict[str, Any]:
    config = dev()
    config["simfleet:services"] = list(entries)
    config["simfleet:platform"].update(platform)
    return config


def test_dev_service_ships_off_and_validates_with_its_defaults_when_on() -> None:
    # Off: validated, not deployed (no pods, no GPUs in the queue arithmetic, nothing in the idle cost).
    off = load(dev())
    assert off.services == ()
    assert "services[0] (radstream-triton).enabled: is false, so the service is not deployed" in off.warnings
    cfg = load(with_services(triton()))
    [service] = cfg.services
    assert service.name == "radstream-triton" and service.enabled
    assert [(p.name, p.port) for p in service.ports] == [("http", 8000), ("grpc", 8001), ("metrics", 8002)]
    assert (service.replicas.min, service.replicas.max, service.autoscale.cpu) == (1, 2, 70)
    assert service.expose.kind == "cluster" and service.capacity == "onDemand"
    assert (service.probes.readiness_path, service.probes.liveness_path) == (TRITON_READY_PATH, TRITON_LIVE_PATH)
    assert service.model_repository == "s3://example-radstream-models/models/radstream/"
    assert cfg.platform.shared_storage.enabled and cfg.platform.shared_storage.transition_to_ia_days == 30
    assert cfg.platform.metrics.enabled and cfg.platform.metrics.persistence
    assert "triton" in cfg.platform.repositories


def test_minimal_entry_gets_tritons_defaults() -> None:
    spec = ServiceSpec.model_validate({"name": "echo", "image": "triton:26.02-py3"})
    assert spec.autoscale.cpu == 70 and spec.replicas.min == spec.replicas.max == 1
    assert spec.port_numbers == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert spec.expose.internal_load_balancer is None and spec.read_only_root_filesystem
    assert spec.probes.startup_timeout == 600


def test_model_repository_is_normalized_to_a_prefix() -> None:
    spec = ServiceSpec.model_validate({"name": "a", "image": "triton:1", "modelRepository": "s3://bucket-1/models/x"})
    assert spec.model_repository == "s3://bucket-1/models/x/"


def test_prod_and_the_unchanged_schema_of_runs_still_validate() -> None:
    prod = load_yaml((ROOT / "Pulumi.prod.yaml").read_text())["config"]
    cfg = load(prod, stack="prod")
    assert cfg.services == () and cfg.platform.shared_storage.enabled and cfg.platform.metrics.enabled


# (mutation of the dev file, expected "path: fragment" lines, all reported at once)
MALFORMED: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "ports",
        with_services(
            triton(ports=[{"name": "http", "port": 8000}, {"name": "grpc", "port": 8000}, {"name": "grpc", "port": 8002}])
        ),
        ["services[0].ports[1].port: 8000 is already used by ports[0]", "services[0].ports[2].name: 'grpc' is already used"],
    ),
    (
        "port-name-and-number",
        with_services(triton(ports=[{"name": "admin", "port": 0}])),
        ["services[0].ports[0].name: 'admin' is not allowed; use 'http', 'grpc' or 'metrics'", "services[0].ports[0].port:"],
    ),
    ("no-http", with_services(triton(ports=[{"name": "grpc", "port": 8001}])), ["services[0].ports: an http port is required"]),
    ("name", with_services(triton(name="Radstream_Triton")), ["services[0].name: 'Radstream_Triton' must be a DNS-1123 label"]),
    ("duplicate", with_services(triton(), triton()), ["services[1].name: 'radstream-triton' is already used by services[0]"]),
    (
        "latest",
        with_services(triton(image="triton:latest")),
        ["services[0].image: 'triton:latest' uses the mutable tag 'latest'"],
    ),
    ("untagged", with_services(triton(image="triton")), ["services[0].image: 'triton' has no tag"]),
    (
        "unknown-repo",
        with_services(triton(image="tritonserver:1")),
        ["services[0].image: repository 'tritonserver' is not one of"],
    ),
    (
        "full-uri-not-allowed",
        with_services(triton(image="nvcr.io/nvidia/tritonserver:26.02-py3")),
        ["services[0].image: 'nvcr.io/nvidia/tritonserver:26.02-py3' is not under platform.imageAllowList"],
    ),
    ("replicas", with_services(triton(replicas={"min": 3, "max": 2})), ["services[0].replicas: min (3) is greater than max (2)"]),
    (
        "replicas-zero",
        with_services(triton(replicas={"min": 0, "max": 2})),
        ["services[0].replicas.min: 0 is too small; use at least 1"],
    ),
    (
        "too-many-for-the-group",
        with_services(triton(replicas={"min": 1, "max": 4})),
        ["services[0].replicas.max: 4 replicas plus one during a rolling update need 5 GPU nodes"],
    ),
    (
        "gpus-per-node",
        with_services(triton(gpus=2)),
        [
            "services[0].gpus: asks for 2 GPUs, but a pod runs on one node and the stack's GPU nodes (g5.2xlarge, g6.2xlarge) have 1"
        ],
    ),
    (
        "node-shape",
        with_services(triton(cpu="16", memory="64Gi")),
        ["services[0].cpu: 16 CPU does not fit the smallest GPU node", "services[0].memory: 64Gi does not fit the smallest GPU"],
    ),
    (
        "cpu-service-on-system-nodes",
        with_services(triton(gpus=0, cpu="1", memory="2Gi", shmSize="256Mi")),
        ["services[0].memory: 2Gi does not fit the smallest system node (1.375Gi allocatable)"],
    ),
    (
        "spot-without-gpus",
        with_services(triton(gpus=0, cpu="500m", memory="1Gi", shmSize="64Mi", capacity="spot")),
        ["services[0].capacity: spot applies to GPU services only"],
    ),
    (
        "autoscale-both",
        with_services(triton(autoscale={"cpu": 70, "pods": {"metric": "q", "target": "5"}})),
        ["services[0].autoscale: set exactly one of cpu"],
    ),
    (
        "pods-without-adapter",
        with_services(triton(autoscale={"pods": {"metric": "nv_inference_queue_duration_us", "target": "500k"}})),
        ["services[0].autoscale.pods: autoscaling on a pods metric needs a metrics adapter"],
    ),
    (
        "cpu-autoscale-needs-cpu",
        with_services(triton(cpu=None)),
        ["services[0].cpu: autoscale.cpu is a percent of the CPU request"],
    ),
    (
        "model-repo",
        with_services(triton(modelRepository="s3://bucket-1")),
        ["services[0].modelRepository: 's3://bucket-1' must be"],
    ),
    (
        "model-repo-wildcard",
        with_services(triton(modelRepository="s3://bucket-1/models/*")),
        ["services[0].modelRepository:", "*, ? or $"],
    ),
    (
        "expose-open",
        with_services(triton(expose={"internalLoadBalancer": {"allowedCidrs": ["0.0.0.0/0"]}})),
        ["services[0].expose.internalLoadBalancer.allowedCidrs[0]: 0.0.0.0/0 opens this to the whole internet"],
    ),
    (
        "expose-public-range",
        with_services(triton(expose={"internalLoadBalancer": {"allowedCidrs": ["8.8.8.0/24"]}})),
        ["services[0].expose.internalLoadBalancer.allowedCidrs: ['8.8.8.0/24'] are not private ranges"],
    ),
    ("expose-word", with_services(triton(expose="public")), ["services[0].expose: 'public': expose is 'cluster' or"]),
    (
        "env",
        with_services(triton(env={"AWS_REGION": "eu-west-1", "9LIVES": "x", "OK_NAME": "y"})),
        ["services[0].env.AWS_REGION: AWS_REGION is set by simfleet or by IRSA", "services[0].env.9LIVES: '9LIVES' is not"],
    ),
    ("shm", with_services(triton(shmSize="12Gi")), ["services[0].shmSize: 12Gi must be smaller than memory (12Gi)"]),
    (
        "clients",
        with_services(triton(clients=[{"namespace": "Runs", "podSelector": {"app": "a b"}}])),
        [
            "services[0].clients[0].namespace: 'Runs' is not a namespace name",
            "services[0].clients[0].podSelector: app: 'a b' is not",
        ],
    ),
    (
        "probe-path",
        with_services(triton(probes={"readinessPath": "v2/ready"})),
        ["services[0].probes.readinessPath: 'v2/ready' must be"],
    ),
    ("unknown-key", with_services(triton(replica=2)), ["services[0].replica: unknown key; did you mean 'replicas'?"]),
    ("not-a-list", {**dev(), "simfleet:services": {"name": "x"}}, ["services: simfleet:services must be a list of services"]),
    (
        "persistence-needs-shared-storage",
        with_services(triton(), sharedStorage={"enabled": False}),
        ["platform.metrics.persistence: the Pushgateway keeps its file on the EFS StorageClass"],
    ),
    (
        "ia-days",
        with_services(triton(), sharedStorage={"enabled": True, "transitionToIADays": 10}),
        ["platform.sharedStorage.transitionToIADays: 10 is not an EFS lifecycle age"],
    ),
]


@pytest.mark.parametrize(("case", "config", "expected"), MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_service_entries_name_their_path(case: str, config: dict[str, Any], expected: list[str]) -> None:
    found = errors(config)
    for fragment in expected:
        assert any(fragment in line for line in found), f"{case}: {fragment!r} not in {found}"


def test_several_bad_services_are_reported_at_once_in_file_order() -> None:
    config = with_services(
        triton(ports=[{"name": "http", "port": 8000}, {"name": "http", "port": 8001}]),
        triton(name="second", image="triton:latest"),
        triton(name="third", gpus=2, env={"MODEL_REPOSITORY": "s3://x/y/"}),
    )
    config["simfleet:runs"][1]["maxRuntime"] = "forever"
    found = errors(config)
    paths = [line.split(":", 1)[0] for line in found]
    assert paths == [
        "runs[1].maxRuntime",
        "services[0].ports[1].name",
        "services[1].image",
        "services[2].gpus",
        "services[2].env.MODEL_REPOSITORY",
    ], found


def test_internal_load_balancer_placeholders_warn_offline_and_fail_for_preview() -> None:
    config = with_services(triton(expose={"internalLoadBalancer": {"allowedCidrs": ["10.40.0.0/16", "198.51.100.0/24"]}}))
    warnings = load(config).warnings
    assert any(
        "services[0] (radstream-triton).expose.internalLoadBalancer.allowedCidrs[1]: 198.51.100.0/24 is a placeholder" in w
        for w in warnings
    )
    with pytest.raises(ConfigError) as caught:
        load(config, offline=False)
    assert any(i.path == "services[0].expose.internalLoadBalancer.allowedCidrs[1]" for i in caught.value.issues)


def test_pods_autoscaling_is_accepted_when_the_platform_declares_an_adapter() -> None:
    config = with_services(
        triton(autoscale={"pods": {"metric": "nv_inference_queue_duration_us", "target": "500k"}}), metricsAdapter=True
    )
    assert load(config).services[0].autoscale.pods is not None


def test_metrics_without_persistence_needs_no_shared_storage() -> None:
    config = with_services(triton(), sharedStorage={"enabled": False}, metrics={"enabled": True, "persistence": False})
    assert not load(config).platform.shared_storage.enabled


def test_allow_listed_full_uri_is_accepted() -> None:
    config = with_services(triton(image="nvcr.io/nvidia/tritonserver:26.02-py3"), imageAllowList=["nvcr.io/nvidia"])
    assert load(config).services[0].image.startswith("nvcr.io/")
    # The prefix must match at a boundary: nvcr.io/nvidia-evil is not nvcr.io/nvidia.
    config = with_services(triton(image="nvcr.io/nvidia-evil/x:1"), imageAllowList=["nvcr.io/nvidia"])
    assert any("services[0].image" in line for line in errors(config))


def test_workload_names_lists_every_kind_with_its_path() -> None:
    cfg = load(with_services(triton()))
    runs = list(enumerate(cfg.runs))
    services = list(enumerate(cfg.services))
    names = workload_names(runs, services)
    assert ("runs[0].name", "trot-baseline") in names and ("services[0].name", "radstream-triton") in names
    assert [path for path, _ in names][-1] == "services[0].name"


def test_a_service_nobody_may_reach_is_a_warning() -> None:
    warnings = load(with_services(triton(clients=[]))).warnings
    assert any(w.startswith("services[0] (radstream-triton).clients: empty and expose is cluster") for w in warnings)
    assert not any("services[0].clients" in w for w in load(dev()).warnings)
