"""The SimRun inputs: what identifies and reaches one run or batch job, built by the Runs and Jobs components, read
back by everything else. `kind` says which (run or job); both go through the one SimRun provider.

A SimRun's inputs are a few KB, never the rendered objects (the state is rewritten whole at every step on
self-managed backends, so 30 KB of objects a run made a 2,000-run state 86 MB). The provider renders the objects
at create time; the offline plan, the policies and the cost estimate render them from the same inputs with the
same pure renderer (`objects_from_inputs`).

Wire names are camelCase. `spec` is the run's own stack entry with defaults left out (labels and TTL
included: they are applied to a live Job without rerunning it); `context` the plain platform values it
resolves to, its glue content hash and its source run; `specHash` is what `diff` compares.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from config import JobSpec, RunSpec
from workloads.identity import (
    IDENTITY_VERSION,
    RunContext,
    RunIdentity,
    SourceRef,
    glue_config_map_name,
    identify,
    render_spec,
)
from workloads.job_identity import KIND_JOB, JobContext, JobIdentity, identify_job
from workloads.renderers import job as job_renderer
from workloads.renderers import run as run_renderer

KIND_RUN = "run"
KINDS = (KIND_RUN, KIND_JOB)


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def run_inputs(spec: RunSpec, ctx: RunContext, identity: RunIdentity, glue_sha: str, source: SourceRef | None) -> dict[str, Any]:
    """A run's SimRun inputs.

    `spec` and `context` travel as canonical JSON text rather than nested objects: the SDK serializes, and the
    engine diffs, a nested object leaf by leaf, which made registering a run cost three bare resources; as text
    a run stays close to one. Text also keeps whole numbers whole (the wire format has only doubles).
    """
    context: dict[str, Any] = {**ctx.as_props(), "glueSha256": glue_sha, "identityVersion": IDENTITY_VERSION}
    if source is not None:
        context["source"] = source.as_props()
    return _inputs(KIND_RUN, spec, ctx.namespace, identity.spec_hash, context)


def job_inputs(spec: JobSpec, ctx: JobContext, identity: JobIdentity) -> dict[str, Any]:
    """A batch job's inputs: the same shape as a run's (`runName` is the workload's name), kind `job`."""
    context: dict[str, Any] = {**ctx.as_props(), "identityVersion": IDENTITY_VERSION}
    return _inputs(KIND_JOB, spec, ctx.namespace, identity.spec_hash, context)


def _inputs(kind: str, spec: RunSpec | JobSpec, namespace: str, spec_hash: str, context: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": kind,
        "runName": spec.name,
        "namespace": namespace,
        "specHash": spec_hash,
        "spec": canonical_json(render_spec(spec)),
        "context": canonical_json(context),
    }


def spec_of(inputs: dict[str, Any]) -> dict[str, Any]:
    """The run's stack entry (defaults left out) from its inputs."""
    return _object(inputs.get("spec"), "spec")


def context_of(inputs: dict[str, Any]) -> dict[str, Any]:
    """The plain platform context (cluster, region, buckets, registry, glue hash, source) from a run's inputs."""
    return _object(inputs.get("context"), "context")


def _object(text: Any, name: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except json.JSONDecodeError as err:
        raise ValueError(f"{name} is not JSON: {err}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a JSON object as text")
    return value


@dataclass(frozen=True)
class DecodedRun:
    """A run's inputs turned back into the renderer's arguments."""

    spec: RunSpec
    ctx: RunContext
    identity: RunIdentity
    glue_sha: str
    source: SourceRef | None

    @property
    def glue_config_map(self) -> str:
        return glue_config_map_name(self.glue_sha)

    def objects(self, seeds: tuple[int, ...] | None = None, gated: bool | None = None) -> list[dict[str, Any]]:
        return run_renderer.render_run(self.spec, self.ctx, self.identity, self.glue_config_map, self.source, seeds, gated)


@dataclass(frozen=True)
class DecodedJob:
    """A batch job's inputs turned back into the renderer's arguments; the provider treats its shards as a run's seeds."""

    spec: JobSpec
    ctx: JobContext
    identity: JobIdentity
    source: None = None  # a job never waits for another workload

    def objects(self, seeds: tuple[int, ...] | None = None, gated: bool | None = None) -> list[dict[str, Any]]:
        return job_renderer.render_job(self.spec, self.ctx, self.identity, seeds)


Decoded = DecodedRun | DecodedJob


_WIRE_KEYS = ("kind", "runName", "namespace", "specHash", "spec", "context")
_decoded: dict[tuple[Any, ...], Decoded] | None = None  # within decoding_once(): inputs -> their decoding


@contextlib.contextmanager
def decoding_once() -> Iterator[None]:
    """Within it, the same inputs are decoded once: the offline plan decodes each run for its manifests, policies, cost
    and summary, which took three decodings (and three hashings) of every run. The decodings are frozen values."""
    global _decoded
    _decoded = {}
    try:
        yield
    finally:
        _decoded = None


def decode(inputs: dict[str, Any]) -> Decoded:
    """Validate a run's or job's inputs back into a spec and its context; the hash is recomputed, so it cannot drift.

    Raises ValueError naming what is wrong.
    """
    if _decoded is None:
        return _decode(inputs)
    key = tuple(inputs.get(k) for k in _WIRE_KEYS)
    if not all(isinstance(part, str) for part in key):
        return _decode(inputs)
    found = _decoded.get(key)
    if found is None:
        found = _decoded[key] = _decode(inputs)
    return found


def _decode(inputs: dict[str, Any]) -> Decoded:
    kind = inputs.get("kind")
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {list(KINDS)}")
    if kind == KIND_JOB:
        return _decode_job(inputs)
    spec = RunSpec.model_validate(spec_of(inputs))
    context = context_of(inputs)
    ctx = RunContext.from_props(context)
    source = SourceRef.from_props(context["source"], ctx) if context.get("source") else None
    glue_sha = str(context.get("glueSha256"))
    identity = identify(spec, ctx, glue_sha, source)
    _check_hash(inputs, identity.spec_hash)
    return DecodedRun(spec, ctx, identity, glue_sha, source)


def _decode_job(inputs: dict[str, Any]) -> DecodedJob:
    spec = JobSpec.model_validate(spec_of(inputs))
    ctx = JobContext.from_props(context_of(inputs))
    identity = identify_job(spec, ctx)
    _check_hash(inputs, identity.spec_hash)
    return DecodedJob(spec, ctx, identity)


def _check_hash(inputs: dict[str, Any], computed: str) -> None:
    if computed != inputs.get("specHash"):
        raise ValueError(
            f"specHash {inputs.get('specHash')!r} is not the hash of its spec and context ({computed}); "
            "the inputs were built by another simfleet version or edited"
        )


def whole_numbers_as_ints(value: Any) -> Any:
    """Undo Pulumi's wire format, which carries every number as a double: 10800.0 -> 10800.

    The API server rejects a float where the schema says integer (activeDeadlineSeconds, ports, ...), and the
    config models read durations and seeds as integers; simfleet's inputs hold no fractional numbers.
    """
    if isinstance(value, dict):
        return {key: whole_numbers_as_ints(item) for key, item in value.items()}
    if isinstance(value, list):
        return [whole_numbers_as_ints(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def objects_from_inputs(inputs: dict[str, Any], seeds: tuple[int, ...] | None = None) -> list[dict[str, Any]]:
    """The run's Kubernetes objects in the renderer's order, rendered from its SimRun inputs (in_apply_order: the
    order SimRunProvider.create writes them)."""
    return decode(inputs).objects(seeds)


def main_job(objects: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    """A run's or job's own Job among its objects: the Job named after it."""
    return next((o for o in objects if o.get("kind") == "Job" and (o.get("metadata") or {}).get("name") == name), None)


def in_apply_order(objects: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """A run's or job's objects in the order SimRunProvider.create writes them: its Job (main_job) first, since
    nothing else is written for a run whose Job cannot exist, then the rest in the renderer's order."""
    main = main_job(objects, name)
    return ([] if main is None else [main]) + [o for o in objects if o is not main]
