"""Run rules, for simulation runs and batch jobs alike (one SimRun dynamic resource, `kind` run or job).

The rules read the Kubernetes objects the provider's own renderer makes from the resource's inputs.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping
from typing import Any

import naming
from policies.rules.model import Context, Resource, Rule
from policies.rules.pods import (
    gpu_limit_problems,
    images_from_elsewhere,
    pod_capacity,
    pod_containers,
    pod_template_spec,
    restricted_pod_problems,
    unpinned_images,
)
from policies.rules.props import get_path, is_map, whole_number

DYNAMIC_TYPE = "pulumi-python:dynamic:Resource"


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
    jobs = [body for body in run_objects(resource) if is_map(body) and body.get("kind") == "Job"]
    return next((job for job in jobs if get_path(job, "metadata", "name") == name), jobs[0] if jobs else None)


def _run_containers(resource: Resource) -> list[tuple[str, Mapping[str, Any]]]:
    """The containers of every Job a run creates: its own, and a continuation's gate."""
    jobs = [o for o in run_objects(resource) if is_map(o) and o.get("kind") == "Job"]
    return [(where, c) for job in jobs for where, c in pod_containers(pod_template_spec(job))]


def _check_run_image_pinned(resource: Resource, ctx: Context) -> Iterator[str]:
    if is_run(resource):
        yield from unpinned_images(_run_containers(resource))


def _check_run_image_source(resource: Resource, ctx: Context) -> Iterator[str]:
    if is_run(resource):
        yield from images_from_elsewhere(_run_containers(resource), ctx)


def _check_run_gpu_limits(resource: Resource, ctx: Context) -> Iterator[str]:
    if is_run(resource):
        yield from gpu_limit_problems(_run_containers(resource))


def _check_run_lifetime(resource: Resource, ctx: Context) -> Iterator[str]:
    if not is_run(resource):
        return
    job = run_job(resource)
    if job is None:
        error = render_error(resource)
        yield f"the run's objects do not render from its inputs ({error})" if error else "the run has no Job among its objects"
        return
    deadline = whole_number(get_path(job, "spec", "activeDeadlineSeconds"))
    ttl = whole_number(get_path(job, "spec", "ttlSecondsAfterFinished"))
    if deadline is None or deadline <= 0:
        yield "Job spec.activeDeadlineSeconds is not set: a hung simulation would hold its GPU forever (maxRuntime)"
    if ttl is None or ttl < 0:
        yield "Job spec.ttlSecondsAfterFinished is not set: finished Jobs and their pods would pile up (ttlAfterFinished)"


def _check_run_security(resource: Resource, ctx: Context) -> Iterator[str]:
    if not is_run(resource):
        return
    for job in (o for o in run_objects(resource) if is_map(o) and o.get("kind") == "Job"):
        for problem in restricted_pod_problems(pod_template_spec(job)):
            yield f"Job {get_path(job, 'metadata', 'name')}: pod template breaks the restricted Pod Security Standard: {problem}"


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
    return _run_mode(resource) == "batch" or (job is not None and get_path(job, "spec", "completionMode") == "Indexed")


def _check_run_batch_spot(resource: Resource, ctx: Context) -> Iterator[str]:
    if not is_run(resource) or not is_batch_run(resource):
        return
    job = run_job(resource)
    capacity = pod_capacity(pod_template_spec(job)) if job is not None else None
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
    labels = get_path(job, "metadata", "labels") or {}
    if get_path(job, "spec", "suspend") is not True:
        yield "the Job must be created suspended (spec.suspend: true), so that only Kueue starts it"
    if not labels.get(naming.KUEUE_PRIORITY_LABEL):
        yield f"the Job has no {naming.KUEUE_PRIORITY_LABEL} label (set it at creation: Kueue limits changing it later)"
    if not labels.get(naming.KUEUE_QUEUE_LABEL):
        name = get_path(job, "metadata", "name")
        gate = next(
            (o for o in run_objects(resource) if o.get("kind") == "Job" and get_path(o, "metadata", "name") == f"{name}-gate"),
            None,
        )
        if gate is None:
            yield f"the Job has no {naming.KUEUE_QUEUE_LABEL} label and no gate Job that adds one: Kueue never admits it"


RULES: tuple[Rule, ...] = (
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
)
