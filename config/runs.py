"""`simfleet:runs`: one simulation run's spec, and the rules that span runs or need the platform."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

import naming
from catalog import load_catalog
from config.errors import Issue
from config.platform import PlatformConfig, node_fit_issues
from config.types import (
    LABEL_KEY_RE,
    LABEL_VALUE_RE,
    RUN_NAME_RE,
    CapacityType,
    Duration,
    ImageString,
    Model,
    Quantity,
    RestrictedCidr,
    parse_image,
)


class Images(Model):
    sim: ImageString = Field(description="Isaac Lab / Unitree simulator image.")
    monty: ImageString = Field(description="Monty brain image.")
    glue: ImageString = Field(description="Glue bridge base image.")


MIN_CHECKPOINT_EVERY = 5 * 60


class Checkpoint(Model):
    from_: str | None = Field(
        None,
        alias="from",
        description="null for a fresh brain, an s3:// URI, or run:<name> for another run's out-checkpoint.",
    )
    save: bool = Field(True, description="Upload /checkpoints/out.mstate when the run ends.")
    every: Duration | None = Field(
        None,
        description="Save a partial checkpoint this often (wall-clock, e.g. 15m); a replacement pod of the same seed "
        "(spot reclaim, drain, retry) resumes from the latest one. Off by default.",
    )

    @model_validator(mode="after")
    def _source(self) -> Checkpoint:
        src = self.from_
        if src is None:
            return self
        if src.startswith("s3://"):
            bucket, _, key = src[5:].partition("/")
            if not re.match(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", bucket) or not key or key.endswith("/"):
                raise ValueError(f"from: {src!r} must be s3://<bucket>/<key of a checkpoint object>")
        elif src.startswith("run:"):
            if not RUN_NAME_RE.match(src[4:]):
                raise ValueError(f"from: {src!r} must name a run, like run:trot-baseline")
        else:
            raise ValueError(f"from: {src!r} must be null, an s3:// URI or run:<name>")
        return self

    @field_validator("every")
    @classmethod
    def _every(cls, every: int | None) -> int | None:
        if every is not None and every < MIN_CHECKPOINT_EVERY:
            raise ValueError(f"every: {every}s is too often; a brain save takes minutes, use at least 5m")
        return every

    @property
    def from_run(self) -> str | None:
        return self.from_[4:] if self.from_ and self.from_.startswith("run:") else None


class Timeouts(Model):
    """How long the glue runtime lets each party go quiet before it ends the attempt (docs/failures.md)."""

    observation: Duration = Field(
        60, gt=0, description="After the first observation: the longest the simulator may publish none (exit 7)."
    )
    step: Duration = Field(30, gt=0, description="The longest one call of the glue's step() may take (exit 9).")
    brain: Duration = Field(60, gt=0, description="The longest Monty may go without answering an observation in time (exit 8).")


class Viewport(Model):
    allowed_cidrs: list[RestrictedCidr] = Field(min_length=1, description="Networks that may open the viewport.")


MAX_RUNTIME_LIMIT = 7 * 24 * 3600


def label_problems(labels: dict[str, str]) -> list[str]:
    """A run's or job's `labels`: each becomes the Kubernetes label simfleet.io/<key>, never one of simfleet's own."""
    problems = []
    for key, value in labels.items():
        if not LABEL_KEY_RE.match(key) or len(key) > 63:
            problems.append(f"labels: key {key!r} is not a valid label name")
        elif key in naming.RESERVED_RUN_LABEL_KEYS:
            problems.append(f"labels: key {key!r} is simfleet's own (simfleet.io/{key}); choose another name")
        if not LABEL_VALUE_RE.match(value) or len(value) > 63:
            problems.append(f"labels.{key}: {value!r} is not a valid label value")
    return problems


class RunSpec(Model):
    name: str = Field(description="DNS-1123 label starting with a letter, at most 50 characters.")
    mode: Literal["interactive", "batch"]
    images: Images
    profile: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$", description="Monty brain profile.")
    glue: str = Field(description="Path of the glue program, relative to the project root.")
    checkpoint: Checkpoint = Field(default_factory=Checkpoint)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    seeds: list[Annotated[int, Field(ge=0)]] = Field(default_factory=lambda: [0], min_length=1, max_length=1000)
    parallelism: int | None = Field(None, ge=1, description="Batch pods at once; defaults to one per seed.")
    max_runtime: Duration = Field(
        2 * 3600,
        gt=0,
        description="Simulation time of one seed; the Job's activeDeadlineSeconds adds startup, saves, uploads, "
        "waves and one retry on top (README 'Time budget').",
    )
    ttl_after_finished: Duration = Field(600, ge=0, description="ttlSecondsAfterFinished of the Job.")
    viewport: Viewport | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    gpus: int = Field(1, ge=1, le=8, description="GPUs for the simulator container (request = limit).")
    cpu: Quantity = Field("3", description="CPU requested by the whole pod.")
    memory: Quantity = Field("12Gi", description="Memory requested by the whole pod.")
    rerun: int = Field(0, ge=0, description="Bump to start the same spec again as a fresh run.")
    queue: str | None = Field(None, description="The Kueue queue (a team's) that admits the run; the stack's default.")

    @model_validator(mode="after")
    def _run_rules(self) -> RunSpec:
        problems: list[str] = []
        if not RUN_NAME_RE.match(self.name) or len(self.name) > 50:
            problems.append(
                f"name {self.name!r} must be a DNS-1123 label that starts with a letter and has at most "
                "50 characters (the Job, Service and pod names are built from it)"
            )
        if self.mode == "interactive" and len(self.seeds) != 1:
            problems.append("an interactive run has exactly one seed; use mode: batch to sweep seeds")
        if self.viewport and self.mode != "interactive":
            problems.append("viewport is only for interactive runs")
        if len(set(self.seeds)) != len(self.seeds):
            problems.append("seeds lists the same seed twice")
        if self.parallelism is not None and self.mode != "batch":
            problems.append("parallelism is only for batch runs")
        if self.max_runtime > MAX_RUNTIME_LIMIT:
            problems.append("maxRuntime is longer than 7d; split the run")
        glue = Path(self.glue)
        if glue.is_absolute() or ".." in glue.parts:
            problems.append(f"glue {self.glue!r} must be a path inside the project, like glue/trot.py")
        problems += label_problems(self.labels)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def parallel_pods(self) -> int:
        return self.parallelism or len(self.seeds) if self.mode == "batch" else 1

    @property
    def capacity(self) -> CapacityType:
        return "spot" if self.mode == "batch" else "onDemand"


def run_platform_rules(platform: PlatformConfig, runs: Iterable[tuple[int, RunSpec]]) -> list[Issue]:
    issues: list[Issue] = []
    gpu = platform.node_groups.gpu
    catalog = load_catalog().instances
    known = [catalog[t] for t in gpu.instance_types if t in catalog]
    for index, run in runs:
        path = f"runs[{index}]"
        if run.capacity not in gpu.capacity:
            issues.append(
                Issue(
                    f"{path}.mode",
                    f"{run.mode} runs need {run.capacity} GPU capacity; add {run.capacity} to platform.nodeGroups.gpu.capacity",
                )
            )
        for slot in ("sim", "monty", "glue"):
            ref = parse_image(getattr(run.images, slot))
            if ref.registry is None and ref.repository not in platform.repositories:
                issues.append(
                    Issue(
                        f"{path}.images.{slot}",
                        f"repository {ref.repository!r} is not one of the stack's ECR repositories {platform.repositories}",
                    )
                )
        if not known:
            continue
        gpus_per_node = known[0].gpus
        if run.gpus > gpus_per_node:
            issues.append(Issue(f"{path}.gpus", f"asks for {run.gpus} GPUs but GPU nodes have {gpus_per_node}"))
        issues += node_fit_issues(path, run.cpu, run.memory, gpu.instance_types, "GPU")
    return issues


def run_cross_rules(
    runs: list[tuple[int, RunSpec]], base_dir: Path, lint_glue: Callable[[Path], list[str]] | None
) -> list[Issue]:
    issues: list[Issue] = []
    by_name: dict[str, tuple[int, RunSpec]] = {}
    for index, run in runs:
        if run.name in by_name:
            issues.append(Issue(f"runs[{index}].name", f"{run.name!r} is already used by runs[{by_name[run.name][0]}]"))
        else:
            by_name[run.name] = (index, run)
    for index, run in runs:
        source = run.checkpoint.from_run
        if source is None:
            continue
        path = f"runs[{index}].checkpoint.from"
        if source == run.name:
            issues.append(Issue(path, "a run cannot continue from itself"))
        elif source not in by_name:
            issues.append(Issue(path, f"no run named {source!r} in this stack"))
        elif not by_name[source][1].checkpoint.save:
            issues.append(Issue(path, f"run {source!r} does not save a checkpoint (checkpoint.save is false)"))
        elif len(by_name[source][1].seeds) != 1:
            issues.append(
                Issue(
                    path,
                    f"run {source!r} sweeps {len(by_name[source][1].seeds)} seeds, so it has one "
                    "checkpoint per seed; continue from one of them with its s3:// URI",
                )
            )
    cycle = _checkpoint_cycle(by_name)
    if cycle:
        issues.append(Issue(f"runs[{by_name[cycle[0]][0]}].checkpoint.from", f"checkpoint chain loops: {' -> '.join(cycle)}"))
    if lint_glue is None:
        from workloads.contract import lint_glue as default_lint

        lint_glue = default_lint
    linted: dict[str, list[str]] = {}
    for index, run in runs:
        if run.glue not in linted:
            linted[run.glue] = lint_glue(base_dir / run.glue)
        issues += [Issue(f"runs[{index}].glue", f"{run.glue}: {problem}") for problem in linted[run.glue]]
    return issues


def _checkpoint_cycle(by_name: dict[str, tuple[int, RunSpec]]) -> list[str]:
    for start in by_name:
        seen = [start]
        current = by_name[start][1].checkpoint.from_run
        while current in by_name:
            if current in seen:
                return [*seen[seen.index(current) :], current]
            seen.append(current)
            current = by_name[current][1].checkpoint.from_run
    return []


def checkpoint_order(runs: Sequence[RunSpec]) -> list[RunSpec]:
    """Runs ordered so that a run comes after the run whose checkpoint it continues from."""
    by_name = {run.name: run for run in runs}
    ordered: list[RunSpec] = []
    placed: set[str] = set()

    def place(run: RunSpec) -> None:
        if run.name in placed:
            return
        source = run.checkpoint.from_run
        if source in by_name:
            place(by_name[source])
        placed.add(run.name)
        ordered.append(run)

    for run in runs:
        place(run)
    return ordered
