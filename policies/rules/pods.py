"""Pod-template checks shared by runs, batch jobs and services: images, GPU limits, Pod Security, capacity, GPU count."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import naming
from policies.rules.model import Context
from policies.rules.props import as_list, get_path, is_map, whole_number

# An ECR private registry host, of any account and region (`.cn` in the China partition).
ECR_HOST_RE = re.compile(r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
# Pod Security Standards, "restricted" profile (kubernetes.io/docs/concepts/security/pod-security-standards/).
RESTRICTED_VOLUME_TYPES = frozenset(
    {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
)
SECCOMP_ALLOWED = ("RuntimeDefault", "Localhost")


def pod_template_spec(workload: Mapping[str, Any]) -> Mapping[str, Any]:
    """The pod spec of a Job's or Deployment's template ({} when it has none)."""
    spec = get_path(workload, "spec", "template", "spec")
    return spec if is_map(spec) else {}


def pod_containers(pod: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """Every container of a pod spec with where it sits (`initContainers[name]`), for messages."""
    out = []
    for kind in ("initContainers", "containers", "ephemeralContainers"):
        for container in as_list(pod.get(kind)):
            if is_map(container):
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


def unpinned_images(containers: Iterable[tuple[str, Mapping[str, Any]]]) -> Iterator[str]:
    """Containers whose image has no tag, or `latest`, and no digest."""
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


def images_from_elsewhere(containers: Iterable[tuple[str, Mapping[str, Any]]], ctx: Context) -> Iterator[str]:
    """Containers whose image `image_allowed` does not admit."""
    for where, container in containers:
        image = str(container.get("image") or "")
        if not image_allowed(image, ctx):
            yield (
                f"{where}: image {image!r} is neither in the stack's ECR repositories ({', '.join(ctx.repositories) or 'none'}) "
                "nor under platform.imageAllowList"
            )


def gpu_quantity(value: Any) -> int | None:
    """A GPU count from a resource quantity, or None when it is not a whole number."""
    # Extended resources are whole numbers, written as "1" in manifests (or 1 / 1.0 through the engine).
    number = whole_number(value)
    if number is not None:
        return number
    try:
        return int(str(value))
    except ValueError:
        return None


def gpu_limit_problems(containers: Iterable[tuple[str, Mapping[str, Any]]]) -> Iterator[str]:
    """Containers that request GPUs without an equal limit (the device plugin needs request == limit)."""
    for where, container in containers:
        requests = get_path(container, "resources", "requests", naming.GPU_RESOURCE)
        limits = get_path(container, "resources", "limits", naming.GPU_RESOURCE)
        if requests is None and limits is None:
            continue
        if limits is None:
            yield f"{where}: requests {requests} {naming.GPU_RESOURCE} but sets no limit; GPUs need request equal to limit"
        elif requests is not None and gpu_quantity(requests) != gpu_quantity(limits):
            yield f"{where}: {naming.GPU_RESOURCE} request {requests} differs from limit {limits}; they must be equal"


def restricted_pod_problems(pod: Mapping[str, Any]) -> list[str]:
    """Where a pod spec breaks the Pod Security Standards "restricted" profile."""
    problems: list[str] = []
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag) is True:
            problems.append(f"spec.{flag} is true")
    for volume in as_list(pod.get("volumes")):
        if is_map(volume):
            kinds = [k for k in volume if k != "name"]
            bad = [k for k in kinds if k not in RESTRICTED_VOLUME_TYPES]
            if bad:
                problems.append(f"volume {volume.get('name')} is of type {', '.join(bad)}")
    pod_sc = pod.get("securityContext") or {}
    if whole_number(pod_sc.get("runAsUser")) == 0:
        problems.append("securityContext.runAsUser is 0 (root)")
    for where, container in pod_containers(pod):
        sc = container.get("securityContext") or {}
        run_as_non_root = sc.get("runAsNonRoot") if sc.get("runAsNonRoot") is not None else pod_sc.get("runAsNonRoot")
        if run_as_non_root is not True:
            problems.append(f"{where}: runAsNonRoot is not true (set it on the pod or the container)")
        if whole_number(sc.get("runAsUser")) == 0:
            problems.append(f"{where}: runAsUser is 0 (root)")
        seccomp = get_path(sc, "seccompProfile", "type") or get_path(pod_sc, "seccompProfile", "type")
        if seccomp not in SECCOMP_ALLOWED:
            problems.append(f"{where}: seccompProfile.type is {seccomp or 'unset'}; use RuntimeDefault")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation must be false")
        if sc.get("privileged") is True:
            problems.append(f"{where}: privileged is true")
        capabilities = sc.get("capabilities") or {}
        if "ALL" not in as_list(capabilities.get("drop")):
            problems.append(f"{where}: capabilities.drop must include ALL")
        added = [c for c in as_list(capabilities.get("add")) if c != "NET_BIND_SERVICE"]
        if added:
            problems.append(f"{where}: capabilities.add {added} (only NET_BIND_SERVICE is allowed)")
        host_ports = [p.get("hostPort") for p in as_list(container.get("ports")) if is_map(p) and p.get("hostPort")]
        if host_ports:
            problems.append(f"{where}: hostPort {host_ports}")
    return problems


def pod_capacity(pod: Mapping[str, Any]) -> str | None:
    """SPOT / ON_DEMAND when the pod pins eks.amazonaws.com/capacityType, by nodeSelector or required node affinity."""
    selected = get_path(pod, "nodeSelector", naming.CAPACITY_TYPE_LABEL)
    if isinstance(selected, str):
        return selected
    terms = as_list(
        get_path(pod, "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms")
    )
    values: set[str] = set()
    for term in terms:
        for expression in as_list(get_path(term, "matchExpressions")):
            if get_path(expression, "key") == naming.CAPACITY_TYPE_LABEL and get_path(expression, "operator") == "In":
                values.update(str(v) for v in as_list(get_path(expression, "values")))
    return values.pop() if len(values) == 1 else None


def pod_gpus(pod: Mapping[str, Any]) -> int:
    """GPUs a pod holds while it runs: its containers plus native sidecars (restartPolicy Always init containers)."""

    def gpus(container: Mapping[str, Any]) -> int:
        value = get_path(container, "resources", "limits", naming.GPU_RESOURCE)
        if value is None:
            value = get_path(container, "resources", "requests", naming.GPU_RESOURCE)
        return gpu_quantity(value) or 0 if value is not None else 0

    running = [c for c in as_list(pod.get("containers")) if is_map(c)]
    init = [c for c in as_list(pod.get("initContainers")) if is_map(c)]
    sidecars = [c for c in init if c.get("restartPolicy") == "Always"]
    one_shot = [c for c in init if c.get("restartPolicy") != "Always"]
    return max(sum(map(gpus, running + sidecars)), max(map(gpus, one_shot), default=0))
