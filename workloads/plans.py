"""What the program makes of a stack's runs and jobs, pure: the contexts it gives them and each one's identity and
SimRun inputs. `__main__.py` registers them; the `simfleet` command recomputes them from the same stack file to find
each run's Job and records without Pulumi's state."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import naming
from config import JobSpec, RunSpec, StackConfig, checkpoint_order
from workloads.identity import RunContext, RunIdentity, SourceRef, glue_sha256, identify, registry_url
from workloads.inputs import job_inputs, run_inputs
from workloads.job_identity import JobContext, JobIdentity, identify_job
from workloads.renderers.run import job_deadline


def cluster_name(stack: str) -> str:
    return f"simfleet-{stack}"


@dataclass(frozen=True)
class StackContexts:
    """The plain platform values every run and job of a stack is identified and rendered with."""

    runs: RunContext
    jobs: JobContext


def stack_contexts(
    cfg: StackConfig, stack: str, region: str, account_id: str, dns_suffix: str = "amazonaws.com"
) -> StackContexts:
    """The contexts from values known when the program starts (never resource outputs, workloads/identity.py): the
    account id names the buckets and the registry exactly as Storage and Registry do."""
    platform = cfg.platform
    # Only where the collector scrapes it: a push nothing collects would only keep the GPU for the uploader's linger
    # (config/stack.py warns about the Pushgateway with observability off). Never part of a spec hash.
    scraped_pushgateway = naming.pushgateway_url() if platform.metrics.enabled and platform.observability.enabled else None
    runs = RunContext(
        cluster_name=cluster_name(stack),
        namespace=naming.RUNS_NAMESPACE,
        service_account=naming.RUN_SERVICE_ACCOUNT,
        checkpoints_bucket=naming.bucket_name(stack, "checkpoints", account_id),
        artifacts_bucket=naming.bucket_name(stack, "artifacts", account_id),
        registry_url=registry_url(account_id, region, dns_suffix),
        region=region,
        kubernetes_version=platform.kubernetes_version,
        vpc_cidr=str(platform.network.cidr),
        default_queue=cfg.queues.default_name,
        pushgateway_url=scraped_pushgateway,
    )
    jobs = JobContext(
        cluster_name=runs.cluster_name,
        namespace=naming.RUNS_NAMESPACE,
        service_account=naming.JOB_SERVICE_ACCOUNT,
        artifacts_bucket=runs.artifacts_bucket,
        registry_url=runs.registry_url,
        region=region,
        kubernetes_version=platform.kubernetes_version,
        pushgateway_url=scraped_pushgateway,
        datasets_claim=naming.DATASETS_CLAIM if platform.shared_storage.enabled else None,
        default_queue=cfg.queues.default_name,
    )
    return StackContexts(runs, jobs)


@dataclass(frozen=True)
class PlannedRun:
    """One run as the program decided it: identity and everything its SimRun inputs carry (all plain)."""

    spec: RunSpec
    identity: RunIdentity
    glue_sha: str
    source: SourceRef | None
    inputs: dict[str, Any]  # the SimRun inputs (workloads/inputs.py)


def plan_runs(runs: Sequence[RunSpec], ctx: RunContext, glue_sources: dict[str, str]) -> list[PlannedRun]:
    """Every run's identity and inputs, sources before the runs that continue from their checkpoints."""
    planned: dict[str, PlannedRun] = {}
    for spec in checkpoint_order(runs):
        glue_sha = glue_sha256(glue_sources[spec.glue])
        source = _source_ref(planned[spec.checkpoint.from_run]) if spec.checkpoint.from_run else None
        identity = identify(spec, ctx, glue_sha, source)
        planned[spec.name] = PlannedRun(spec, identity, glue_sha, source, run_inputs(spec, ctx, identity, glue_sha, source))
    return list(planned.values())


def _source_ref(source: PlannedRun) -> SourceRef:
    identity = source.identity
    # config/ only lets a run continue from a single-seed run that saves its checkpoint.
    if identity.checkpoint_uri is None or identity.index_uri is None:
        raise ValueError(f"run {identity.run} has no single out-checkpoint to continue from")
    return SourceRef(identity.run, identity.spec_hash, identity.checkpoint_uri, identity.index_uri, job_deadline(source.spec))


@dataclass(frozen=True)
class PlannedJob:
    spec: JobSpec
    identity: JobIdentity
    inputs: dict[str, Any]


def plan_jobs(jobs: Sequence[JobSpec], ctx: JobContext) -> list[PlannedJob]:
    """Every job's identity and SimRun inputs."""
    planned = []
    for spec in jobs:
        identity = identify_job(spec, ctx)
        planned.append(PlannedJob(spec, identity, job_inputs(spec, ctx, identity)))
    return planned
