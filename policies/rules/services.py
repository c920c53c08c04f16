"""Service rules: the long-running Deployments in the services namespace (pinned images, GPUs, Pod Security, probes)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import naming
from policies.rules.model import Context, Resource, Rule
from policies.rules.pods import (
    gpu_limit_problems,
    images_from_elsewhere,
    pod_containers,
    pod_template_spec,
    restricted_pod_problems,
    unpinned_images,
)
from policies.rules.props import as_list, get_path, is_map

DEPLOYMENT = "kubernetes:apps/v1:Deployment"


def is_service(resource: Resource) -> bool:
    """A service's Deployment: it carries the service label (or, failing that, lives in the services namespace).

    The label is read first: it is plain, while the namespace is an output of the namespace resource, unknown during a
    first preview.
    """
    if resource.resource_type != DEPLOYMENT:
        return False
    if is_map(get_path(resource.props, "metadata", "labels")) and naming.SERVICE_LABEL in resource.props["metadata"]["labels"]:
        return True
    return get_path(resource.props, "metadata", "namespace") == naming.SERVICES_NAMESPACE


def _service_containers(resource: Resource) -> list[tuple[str, Mapping[str, Any]]]:
    return pod_containers(pod_template_spec(resource.props))


def _check_service_image_pinned(resource: Resource, ctx: Context) -> Iterator[str]:
    if is_service(resource):
        yield from unpinned_images(_service_containers(resource))


def _check_service_image_source(resource: Resource, ctx: Context) -> Iterator[str]:
    if is_service(resource):
        yield from images_from_elsewhere(_service_containers(resource), ctx)


def _check_service_gpu_limits(resource: Resource, ctx: Context) -> Iterator[str]:
    if is_service(resource):
        yield from gpu_limit_problems(_service_containers(resource))


def _check_service_security(resource: Resource, ctx: Context) -> Iterator[str]:
    if not is_service(resource):
        return
    for problem in restricted_pod_problems(pod_template_spec(resource.props)):
        yield f"pod template breaks the restricted Pod Security Standard: {problem}"


PROBE_HANDLERS = ("httpGet", "tcpSocket", "grpc", "exec")


def _check_service_probes(resource: Resource, ctx: Context) -> Iterator[str]:
    if not is_service(resource):
        return
    for container in as_list(pod_template_spec(resource.props).get("containers")):
        if not is_map(container):
            continue
        where = f"containers[{container.get('name')}]"
        for probe, why in (
            ("readinessProbe", "the Service would send requests to a pod that cannot answer them yet"),
            ("livenessProbe", "a hung server would keep its pod, and its GPU, forever"),
        ):
            settings = container.get(probe)
            if not is_map(settings) or not any(h in settings for h in PROBE_HANDLERS):
                yield f"{where}: no {probe}: {why}"


RULES: tuple[Rule, ...] = (
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
)
