"""Job identity, pure: a batch job's canonical spec projection, its hash, and where its shards write in S3.

The same rules as a run's (workloads/identity.py): the hash comes from values known when the program starts, so
no platform change can make it unknown; it covers what changes what a job computes or where it writes (the image
as the URI it resolves to, command, args, env, shards, resources, shm, datasets mount, outputs path, maxRuntime,
parallelism when it limits the shards, rerun; the bucket, namespace, cluster and registry). It leaves out what
only decides how a finished job is kept and shown (`labels`, `ttlAfterFinished`) and where its pods are placed
(`capacity`, `spreadAcrossNodes`, `queue`: a change applies to the next Job created, never reruns a finished one).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import naming
from config import JobSpec
from workloads.identity import HASH_LENGTH, IDENTITY_VERSION, CamelProps, exact_quantity, resolve_image

KIND_JOB = "job"
# JobSpec fields outside the identity (Python names); the image is hashed as the URI it resolves to.
NOT_IDENTITY = frozenset({"labels", "ttl_after_finished", "capacity", "spread_across_nodes", "image", "queue"})
QUANTITY_UNITS = {"cpu": "m", "memory": "bytes", "shmSize": "bytes"}


@dataclass(frozen=True)
class JobContext(CamelProps):
    """What a job's identity and rendering need from the platform: plain values, known when the program starts."""

    cluster_name: str
    namespace: str
    service_account: str
    artifacts_bucket: str
    registry_url: str
    region: str
    kubernetes_version: str | None = None
    pushgateway_url: str | None = None  # set when platform.metrics is on: every shard gets SIMFLEET_PUSHGATEWAY_URL
    datasets_claim: str | None = None  # set when platform.sharedStorage is on
    default_queue: str = naming.GENERATED_QUEUE  # the Kueue queue of a job whose spec names none


@dataclass(frozen=True)
class JobIdentity:
    """One job's hash and S3 locations: every shard writes under shard-<i>/ of the prefix."""

    job: str
    spec_hash: str
    prefix: str  # jobs/<job>/<hash>/ in the artifacts bucket
    outputs_uri: str
    shards: tuple[int, ...]

    @property
    def seeds(self) -> tuple[int, ...]:
        """The units the provider tracks one index.json for: the shards (a run's are its seeds)."""
        return self.shards

    def index_keys(self) -> list[str]:
        return job_index_keys(self.prefix, self.shards)


def job_prefix(job: str, hash_: str) -> str:
    """Key prefix of a job in the artifacts bucket; the job role may write only under naming.JOBS_PREFIX."""
    return f"{naming.JOBS_PREFIX}{job}/{hash_}/"


def shard_prefix(prefix: str, shard: int) -> str:
    return f"{prefix}shard-{shard}/"


def job_index_keys(prefix: str, shards: tuple[int, ...] | list[int]) -> list[str]:
    return [f"{shard_prefix(prefix, shard)}index.json" for shard in shards]


def job_projection(spec: JobSpec) -> dict[str, Any]:
    """The job's identity fields, defaults left out and equal values written alike (as a run's, identity.py)."""
    projection = spec.model_dump(mode="json", by_alias=True, exclude_defaults=True, exclude=set(NOT_IDENTITY))
    for key, unit in QUANTITY_UNITS.items():
        if projection.get(key) is None:
            continue
        amount = exact_quantity(projection[key], unit)
        default = JobSpec.model_fields[_snake(key)].default
        if default is not None and amount == exact_quantity(default, unit):
            del projection[key]
        else:
            projection[key] = amount
    if projection.get("parallelism") is not None and projection["parallelism"] >= spec.shards:
        del projection["parallelism"]
    return projection


def _snake(key: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in key)


def job_spec_hash(spec: JobSpec, ctx: JobContext) -> str:
    payload = {
        "v": IDENTITY_VERSION,
        "kind": KIND_JOB,
        "spec": job_projection(spec),
        "image": resolve_image(spec.image, ctx.registry_url),
        "bucket": ctx.artifacts_bucket,
        "namespace": ctx.namespace,
        "cluster": ctx.cluster_name,
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:HASH_LENGTH]


def identify_job(spec: JobSpec, ctx: JobContext) -> JobIdentity:
    hash_ = job_spec_hash(spec, ctx)
    prefix = job_prefix(spec.name, hash_)
    return JobIdentity(
        job=spec.name,
        spec_hash=hash_,
        prefix=prefix,
        outputs_uri=f"s3://{ctx.artifacts_bucket}/{prefix}",
        shards=tuple(range(spec.shards)),
    )
