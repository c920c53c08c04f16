"""A stack's declared runs and batch jobs as the program plans them (workloads/plans.py), with where each one's Job,
records, checkpoints and logs are: what the `simfleet` command reads, without Pulumi's state."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import naming
from config import JobSpec, RunSpec, StackConfig
from workloads.inputs import context_of
from workloads.observe import Where, where
from workloads.observe.usage import Prices, prices_for
from workloads.plans import plan_jobs, plan_runs, stack_contexts

KIND_RUN, KIND_JOB = "run", "job"


@dataclass(frozen=True)
class Declared:
    """One run or batch job of the stack file, planned: its spec hash and prefixes are the ones `pulumi up` uses."""

    name: str
    kind: str  # run | job
    mode: str  # interactive | batch (runs); job
    inputs: dict[str, Any]  # its SimRun inputs (workloads/inputs.py)
    where: Where
    queue: str
    gpus: int  # per pod
    max_runtime: int  # seconds of simulation (runs) or of the program (jobs), per seed or shard
    labels: dict[str, str]
    checkpoints_bucket: str | None  # where its out-checkpoints go (runs that save one)
    spot_first: bool  # Kueue gives it spot capacity first: batch runs, and jobs that ask for spot
    viewport: bool = False
    source: str | None = None  # the run a continuation starts from
    parallelism: int | None = None
    checked_hash: str | None = None  # set when `where` is the cluster's hash, not the one this checkout computes

    @property
    def spec_hash(self) -> str:
        return self.where.spec_hash

    @property
    def units(self) -> tuple[int, ...]:
        """Seeds of a run, shards of a job."""
        return self.where.units

    @property
    def unit(self) -> str:
        return "seed" if self.kind == KIND_RUN else "shard"

    @property
    def checkpoints_uri(self) -> str | None:
        """s3://<checkpoints>/runs/<run>/<hash>/: out.mstate (one seed) or seed-<n>/out.mstate (a sweep)."""
        return f"s3://{self.checkpoints_bucket}/{self.where.prefix}" if self.checkpoints_bucket else None

    def unit_prefix(self, unit: int) -> str:
        """The seed's (shard's) key prefix in the artifacts bucket."""
        return self.where.index_keys[self.units.index(unit)].removesuffix("index.json")


@dataclass(frozen=True)
class Fleet:
    """The stack as the command sees it: names, places, prices, and every declared run and job by name."""

    stack: str
    region: str
    cluster_name: str
    namespace: str
    artifacts_bucket: str
    checkpoints_bucket: str
    log_group: str | None  # None when the stack ships no container logs to CloudWatch (observability off)
    prices: Prices
    declared: dict[str, Declared] = field(default_factory=dict)


def fleet_from(
    cfg: StackConfig, stack: str, region: str, account_id: str, glue_root: Path, dns_suffix: str = "amazonaws.com"
) -> Fleet:
    contexts = stack_contexts(cfg, stack, region, account_id, dns_suffix)
    glue = {path: (glue_root / path).read_text() for path in sorted({run.glue for run in cfg.runs})}
    declared: dict[str, Declared] = {}
    for run in plan_runs(cfg.runs, contexts.runs, glue):
        declared[run.spec.name] = _run(run.spec, run.inputs, contexts.runs.checkpoints_bucket)
    for job in plan_jobs(cfg.jobs, contexts.jobs):
        declared[job.spec.name] = _job(job.spec, job.inputs)
    observability = cfg.platform.observability.enabled
    return Fleet(
        stack=stack,
        region=region,
        cluster_name=contexts.runs.cluster_name,
        namespace=contexts.runs.namespace,
        artifacts_bucket=contexts.runs.artifacts_bucket,
        checkpoints_bucket=contexts.runs.checkpoints_bucket,
        log_group=naming.container_log_group(contexts.runs.cluster_name) if observability else None,
        prices=prices_for(cfg.platform),
        declared=declared,
    )


def _default_queue(inputs: dict[str, Any]) -> str:
    return str(context_of(inputs).get("defaultQueue") or naming.GENERATED_QUEUE)


def _run(spec: RunSpec, inputs: dict[str, Any], checkpoints_bucket: str) -> Declared:
    return Declared(
        name=spec.name,
        kind=KIND_RUN,
        mode=spec.mode,
        inputs=inputs,
        where=where(inputs),
        queue=spec.queue or _default_queue(inputs),
        gpus=spec.gpus,
        max_runtime=int(spec.max_runtime),
        labels=dict(spec.labels),
        checkpoints_bucket=checkpoints_bucket if spec.checkpoint.save else None,
        spot_first=spec.mode == "batch",
        viewport=spec.viewport is not None,
        source=spec.checkpoint.from_run,
        parallelism=spec.parallelism,
    )


def _job(spec: JobSpec, inputs: dict[str, Any]) -> Declared:
    return Declared(
        name=spec.name,
        kind=KIND_JOB,
        mode="job",
        inputs=inputs,
        where=where(inputs),
        queue=spec.queue or _default_queue(inputs),
        gpus=spec.gpus,
        max_runtime=int(spec.max_runtime),
        labels=dict(spec.labels),
        checkpoints_bucket=None,
        spot_first=spec.capacity == "spot",
        parallelism=spec.parallelism,
    )
