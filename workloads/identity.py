"""Run identity, pure: the canonical spec projection, the spec hash, and where a run's data lives in S3.

The hash is computed only from values known when the program starts (the stack config, plus the account
id and region from invokes, which name the buckets and the registry), never from another resource's
outputs: a replaced platform resource can never make a hash unknown, so it can never make the engine
replace (and rerun) a finished run.

What moves the hash is what changes what a run computes and where it writes: the spec's identity fields
(images, profile, glue content, seeds, checkpoint source and the source's own hash, resources, maxRuntime,
rerun, mode, viewport), the resolved image URIs, the bucket names, the namespace and the cluster. What does
not: `labels` and `ttlAfterFinished` (they change how a finished run is kept and shown), `queue` (who admits it), defaults (a field
added later with a default, or a default written out, leaves every hash alone), spellings of the same value
(`2h` and `7200`, `12Gi` and `12288Mi`, `monty:1` and `<account>.dkr.ecr.<region>.amazonaws.com/monty:1`), and how the pod is rendered (a simfleet upgrade never reruns a run).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any, Self

from pydantic import BaseModel

import naming
from config import QUANTITY_RE, RunSpec, parse_image
from config.runs import IMAGE_SLOTS

# Bump only with a migration note in docs/operators.md ("Upgrades"): a new version moves every hash, so every run would
# run again. Any change of what goes into the hash needs a bump, and workloads/identity_rules.py pins each version's rules.
IDENTITY_VERSION = 1
HASH_LENGTH = 12
# RunSpec fields outside the identity (Python names).
NOT_IDENTITY = frozenset({"labels", "ttl_after_finished", "queue"})
# Hashed by what they resolve to instead (`monty:1` and `<registry>/monty:1` are the same image; the glue by its
# content, not its path).
RESOLVED_FIELDS = frozenset({"images", "glue"})
# Quantity fields and the unit each is hashed in, so equal amounts written differently hash alike.
QUANTITY_UNITS = {"cpu": "m", "memory": "bytes"}
_EXACT_FACTORS = {
    None: Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
}


class CamelProps:
    """A frozen dataclass of plain values as wire props (camelCase keys, None left out) and back."""

    def as_props(self) -> dict[str, Any]:
        return {wire: value for name, wire in _wire_names(type(self)) if (value := getattr(self, name)) is not None}

    @classmethod
    def from_props(cls, props: dict[str, Any]) -> Self:
        # A key left out (None, or a field added since the props were written) takes the field's default.
        return cls(**{name: value for name, wire in _wire_names(cls) if (value := props.get(wire)) is not None})


_wire: dict[type, tuple[tuple[str, str], ...]] = {}  # CamelProps class -> each field's name and wire name


def _wire_names(cls: type) -> tuple[tuple[str, str], ...]:
    """Each field of a CamelProps class and its wire name, worked out once per class: a plan turns every run's context
    into props and back, and camel() of every field name (and asdict's deep copy) was most of that."""
    names = _wire.get(cls)
    if names is None:
        names = _wire[cls] = tuple((field.name, camel(field.name)) for field in fields(cls))
    return names


@dataclass(frozen=True)
class RunContext(CamelProps):
    """What a run's identity and rendering need from the platform: plain values, known when the program starts."""

    cluster_name: str
    namespace: str
    service_account: str
    checkpoints_bucket: str
    artifacts_bucket: str
    registry_url: str
    region: str
    kubernetes_version: str | None = None
    vpc_cidr: str | None = None  # the viewport's NetworkPolicy admits the NLB's TCP from the VPC
    # The Kueue queue of a run whose spec names none: the stack's default (config QueuesConfig.default_name).
    default_queue: str = naming.GENERATED_QUEUE
    # Set where the collector scrapes the Pushgateway (platform.metrics and platform.observability on): glue pushes the
    # seed's gauges there and the uploader deletes their group. Not hashed: metrics on or off never reruns a run.
    pushgateway_url: str | None = None


@dataclass(frozen=True)
class SourceRef:
    """The run a `run:<name>` continuation starts from, as far as the consumer needs it."""

    run: str
    spec_hash: str
    checkpoint_uri: str
    index_uri: str
    # How long the source may still run (its Job deadline): the longest the consumer may have to wait.
    deadline_seconds: int

    def as_props(self) -> dict[str, Any]:
        # The URIs follow from the run, its hash and the buckets, so they are not stored.
        return {"run": self.run, "specHash": self.spec_hash, "deadlineSeconds": self.deadline_seconds}

    @classmethod
    def from_props(cls, props: dict[str, Any], ctx: RunContext) -> SourceRef:
        run, hash_ = str(props["run"]), str(props["specHash"])
        prefix = run_prefix(run, hash_)
        return cls(
            run,
            hash_,
            f"s3://{ctx.checkpoints_bucket}/{prefix}out.mstate",
            f"s3://{ctx.artifacts_bucket}/{prefix}index.json",
            int(props["deadlineSeconds"]),
        )


@dataclass(frozen=True)
class RunIdentity:
    """One run's hash and S3 locations."""

    run: str
    spec_hash: str
    prefix: str  # key prefix in both buckets: runs/<run>/<hash>/
    artifacts_uri: str
    checkpoint_uri: str | None  # one seed: the out.mstate URI; several: the prefix holding seed-<n>/out.mstate
    index_uri: str | None  # one seed only; several seeds write seed-<n>/index.json
    seeds: tuple[int, ...]

    def index_keys(self) -> list[str]:
        return index_keys(self.prefix, self.seeds)


def camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(part.title() for part in rest)


def resolve_image(ref: str, registry_url: str) -> str:
    """`monty:1f3c2a9` -> `<registry_url>/monty:1f3c2a9`; a reference with a registry host is returned unchanged."""
    if parse_image(ref).registry is not None:
        return ref
    return f"{registry_url.rstrip('/')}/{ref}"


def resolved_images(spec: RunSpec, registry_url: str) -> dict[str, str]:
    return {slot: resolve_image(getattr(spec.images, slot), registry_url) for slot in IMAGE_SLOTS}


def registry_url(account_id: str, region: str, dns_suffix: str = "amazonaws.com") -> str:
    """The stack's private ECR registry, as ECR names it (`<account>.dkr.ecr.<region>.<suffix>`)."""
    return f"{account_id}.dkr.ecr.{region}.{dns_suffix}"


def glue_sha256(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()


def glue_config_map_name(sha256: str) -> str:
    """The shared, immutable ConfigMap holding one glue file's content, named by that content."""
    return f"glue-{sha256[:HASH_LENGTH]}"


def spec_projection(spec: RunSpec) -> dict[str, Any]:
    """The spec's identity fields, defaults left out and equal values written alike: the canonical form that is hashed.

    pydantic leaves out every field, nested ones included, that equals its default. On top of that: quantities
    are compared as exact numbers (`3` = `3000m`, `12Gi` = `12288Mi`), seeds as a set (each seed writes under its
    own prefix, whatever the order), `parallelism` only when it limits the sweep, and a viewport only by its
    presence (its allowed CIDRs are updated on the live Service and NetworkPolicy without rerunning the run).
    """
    projection = spec.model_dump(mode="json", by_alias=True, exclude_defaults=True, exclude=set(NOT_IDENTITY | RESOLVED_FIELDS))
    for key, unit in QUANTITY_UNITS.items():
        if key not in projection:
            continue
        amount = exact_quantity(projection[key], unit)
        if amount == exact_quantity(RunSpec.model_fields[key].default, unit):
            del projection[key]
        else:
            projection[key] = amount
    if "seeds" in projection:
        projection["seeds"] = sorted(projection["seeds"])
    if projection.get("parallelism") is not None and projection["parallelism"] >= len(spec.seeds):
        del projection["parallelism"]
    if "viewport" in projection:
        projection["viewport"] = True
    return projection


def exact_quantity(text: str, unit: str) -> int:
    """A Kubernetes quantity as a whole number of `unit`s (m for CPU: millicores; bytes for memory), exactly."""
    match = QUANTITY_RE.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a Kubernetes quantity")
    number = Decimal(str(text)[: len(str(text)) - len(match[2] or "")]) * _EXACT_FACTORS[match[2]]
    scaled = number * 1000 if unit == "m" else number
    return int(scaled.to_integral_value())


def render_spec(spec: BaseModel) -> dict[str, Any]:
    """The spec (a run's or a job's) as the provider gets it: every set field (labels and TTL included), defaults left out to stay small."""
    return spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)


def spec_hash(spec: RunSpec, ctx: RunContext, glue_sha: str, source_hash: str | None = None) -> str:
    payload = {
        "v": IDENTITY_VERSION,
        "spec": spec_projection(spec),
        "images": resolved_images(spec, ctx.registry_url),
        "buckets": [ctx.checkpoints_bucket, ctx.artifacts_bucket],
        "namespace": ctx.namespace,
        "cluster": ctx.cluster_name,
        "glue": glue_sha,
        "source": source_hash,
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:HASH_LENGTH]


def run_prefix(run: str, hash_: str) -> str:
    """Key prefix of a run in both buckets; the run role may write only under naming.RUNS_PREFIX."""
    return f"{naming.RUNS_PREFIX}{run}/{hash_}/"


def seed_prefix(prefix: str, seed: int, per_seed: bool) -> str:
    return f"{prefix}seed-{seed}/" if per_seed else prefix


def index_keys(prefix: str, seeds: tuple[int, ...] | list[int]) -> list[str]:
    """index.json keys: one at the prefix for a single seed, one per seed-<n>/ for several."""
    per_seed = len(seeds) > 1
    return [f"{seed_prefix(prefix, seed, per_seed)}index.json" for seed in seeds]


def identify(spec: RunSpec, ctx: RunContext, glue_sha: str, source: SourceRef | None = None) -> RunIdentity:
    if spec.checkpoint.from_run != (source.run if source else None):
        raise ValueError(
            f"run {spec.name}: checkpoint.from is {spec.checkpoint.from_!r} but the source given is {source.run if source else None!r}"
        )
    hash_ = spec_hash(spec, ctx, glue_sha, source.spec_hash if source else None)
    prefix = run_prefix(spec.name, hash_)
    single = len(spec.seeds) == 1
    out = f"s3://{ctx.checkpoints_bucket}/{prefix}{'out.mstate' if single else ''}"
    return RunIdentity(
        run=spec.name,
        spec_hash=hash_,
        prefix=prefix,
        artifacts_uri=f"s3://{ctx.artifacts_bucket}/{prefix}",
        checkpoint_uri=out if spec.checkpoint.save else None,
        index_uri=f"s3://{ctx.artifacts_bucket}/{prefix}index.json" if single else None,
        seeds=tuple(spec.seeds),
    )
