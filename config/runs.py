"""`simfleet:runs`: one simulation run's spec, and the rules that span runs or need the platform."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema, field_validator, model_validator

import naming
from config.errors import Issue, did_you_mean
from config.fit import node_fit_issues, workload_fit_issues
from config.platform import PlatformConfig
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
    absolute_dir,
    image_source_problem,
    overlaps,
)

IMAGE_SLOTS = ("sim", "monty", "glue")


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


# Paths the run pod mounts itself (workloads/renderers/run.py and common.py; tests/test_run_renderer.py checks they
# match): a run's datasets path stays clear of them.
RUN_RESERVED_PATHS = ("/artifacts", "/checkpoints", "/dev/shm", "/glue", "/opt/simfleet", "/tmp")


class RunDatasets(Model):
    """The shared `datasets` claim, mounted read-only in the simulator, brain and glue containers."""

    path: Annotated[str, AfterValidator(absolute_dir)] = Field("/datasets", description="Where the claim is mounted.")


class Timeouts(Model):
    """How long the glue runtime lets each party go quiet before it ends the attempt (docs/failures.md)."""

    observation: Duration = Field(
        60, gt=0, description="After the first observation: the longest the simulator may publish none (exit 7)."
    )
    step: Duration = Field(30, gt=0, description="The longest one call of the glue's step() may take (exit 9).")
    brain: Duration = Field(60, gt=0, description="The longest Monty may go without answering an observation in time (exit 8).")

    @model_validator(mode="after")
    def _step_within_brain(self) -> Timeouts:
        # The brain's silence runs on while a step() runs (glue asks it nothing then): a step allowed to take longer
        # than the brain's silence would end the run as "brain silent" though the brain only waited for glue.
        if self.step >= self.brain:
            raise ValueError(
                f"step: {self.step}s must be shorter than brain: {self.brain}s (the brain's silence counts while a step runs); "
                "raise brain too"
            )
        return self


class Viewport(Model):
    allowed_cidrs: list[RestrictedCidr] = Field(min_length=1, description="Networks that may open the viewport.")


MAX_RUNTIME_LIMIT = 7 * 24 * 3600
MAX_SEEDS = 1000
# `a..b`: every seed from a to b, both included (`0..19` is 20 seeds), as a whole value or as one item of a list.
SEED_RANGE_RE = re.compile(r"^\s*(\d+)\s*\.\.\s*(\d+)\s*$")
_SEEDS_FORMS = "a list like [0, 1, 2] or a range like 0..19 (both ends included: 20 seeds)"


def _seed_range(text: str) -> range:
    match = SEED_RANGE_RE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a seed or a seed range; write {_SEEDS_FORMS}")
    first, last = int(match[1]), int(match[2])
    if last < first:
        raise ValueError(f"{text!r} counts down; write {last}..{first} (both ends included)")
    if last - first + 1 > MAX_SEEDS:
        raise ValueError(
            f"{text!r} is {last - first + 1} seeds; a run sweeps at most {MAX_SEEDS}: split it into runs of "
            f"{first}..{first + MAX_SEEDS - 1}, {first + MAX_SEEDS}..{first + 2 * MAX_SEEDS - 1}, ..."
        )
    return range(first, last + 1)


def parse_seeds(value: Any) -> Any:
    """`seeds` as written -> the list of seeds: a list of seeds and `a..b` ranges, or one range (`0..19`).

    The model holds the expanded list, so a range and the list it stands for are the same spec (and the same hash).
    """
    if isinstance(value, str):
        return list(_seed_range(value))
    if isinstance(value, bool) or not isinstance(value, int | list):
        raise ValueError(f"expected {_SEEDS_FORMS}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value} is not a seed (seeds are 0 or more); write {_SEEDS_FORMS}")
        hint = f", or 0..{value - 1} for {value} seeds from 0" if value >= 2 else ""
        raise ValueError(f"{value} is one number, not a list; write [{value}] for the single seed {value}{hint}")
    seeds: list[Any] = []
    for item in value:
        if isinstance(item, str):
            seeds += _seed_range(item)
            if len(seeds) > MAX_SEEDS:
                break  # the length rule reports it; don't expand a huge list first
        else:
            seeds.append(item)
    return seeds


Seeds = Annotated[
    list[Annotated[int, Field(ge=0)]],
    BeforeValidator(parse_seeds),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": SEED_RANGE_RE.pattern},
                {
                    "type": "array",
                    "items": {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": SEED_RANGE_RE.pattern}]},
                    "minItems": 1,
                    "maxItems": MAX_SEEDS,
                },
            ],
            "examples": ["0..19", [0, 1, 2], ["0..9", 100]],
        }
    ),
]


def label_problems(labels: dict[str, str]) -> list[Issue]:
    """A run's or job's `labels`: each becomes the Kubernetes label simfleet.io/<key>, never one of simfleet's own."""
    problems = []
    for key, value in labels.items():
        if not LABEL_KEY_RE.match(key) or len(key) > 63:
            problems.append(Issue("labels", f"key {key!r} is not a valid label name (lower case letters, digits, -, _ and .)"))
        elif key in naming.RESERVED_RUN_LABEL_KEYS:
            problems.append(Issue("labels", f"key {key!r} is simfleet's own (simfleet.io/{key}); choose another name"))
        if not LABEL_VALUE_RE.match(value) or len(value) > 63:
            problems.append(
                Issue(f"labels.{key}", f"{value!r} is not a valid label value (at most 63 letters, digits, -, _ and .)")
            )
    return problems


def glue_inside_project(glue: str) -> bool:
    path = Path(glue)
    return not path.is_absolute() and ".." not in path.parts


class RunSpec(Model):
    name: str = Field(description="DNS-1123 label starting with a letter, at most 50 characters.")
    mode: Literal["interactive", "batch"]
    images: Images
    profile: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$", description="Monty brain profile.")
    glue: str = Field(description="Path of the glue program, relative to the project root.")
    checkpoint: Checkpoint = Field(default_factory=Checkpoint)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    seeds: Seeds = Field(
        default_factory=lambda: [0],
        min_length=1,
        max_length=MAX_SEEDS,
        description="The seeds to run, each once: a list ([0, 1, 2]), an inclusive range (0..19 is 20 seeds), or a list "
        "of both ([0..9, 100]).",
    )
    parallelism: int | None = Field(None, ge=1, description="Batch pods at once; defaults to one per seed.")
    max_runtime: Duration = Field(
        2 * 3600,
        gt=0,
        description="Simulation time of one seed; the Job's activeDeadlineSeconds adds startup, saves, uploads, "
        "waves and one retry on top (docs/researchers/runs.md, 'Time budget').",
    )
    ttl_after_finished: Duration = Field(600, ge=0, description="ttlSecondsAfterFinished of the Job.")
    viewport: Viewport | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    gpus: int = Field(1, ge=1, le=8, description="GPUs for the simulator container (request = limit).")
    cpu: Quantity = Field("3", description="CPU requested by the whole pod.")
    memory: Quantity = Field("12Gi", description="Memory requested by the whole pod.")
    rerun: int = Field(0, ge=0, description="Bump to start the same spec again as a fresh run.")
    queue: str | None = Field(None, description="The Kueue queue (a team's) that admits the run; the stack's default.")
    datasets: RunDatasets | None = Field(
        None, description="Mount the shared datasets claim read-only (needs platform.sharedStorage); off by default."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        # A field rule (not in problems()), so a bad name is reported beside the entry's other field errors.
        if not RUN_NAME_RE.match(name) or len(name) > 50:
            raise ValueError(
                f"{name!r} must be a DNS-1123 label that starts with a letter and has at most 50 characters "
                "(the Job, Service and pod names are built from it), like walk-fresh"
            )
        return name

    def problems(self) -> list[Issue]:
        """Rules across this entry's fields, each with its path relative to the entry (all of them at once)."""
        found: list[Issue] = []
        if self.mode == "interactive" and len(self.seeds) != 1:
            found.append(
                Issue("seeds", f"an interactive run has exactly one seed, not {len(self.seeds)}; use mode: batch to sweep seeds")
            )
        if self.viewport and self.mode != "interactive":
            found.append(Issue("viewport", "a viewport is only for interactive runs; remove it or use mode: interactive"))
        twice = (
            sorted({seed for seed in self.seeds if self.seeds.count(seed) > 1}) if len(set(self.seeds)) != len(self.seeds) else []
        )
        if twice:
            shown = ", ".join(map(str, twice[:5])) + (", ..." if len(twice) > 5 else "")
            found.append(Issue("seeds", f"lists {shown} more than once; each seed runs once"))
        if self.parallelism is not None and self.mode != "batch":
            found.append(Issue("parallelism", "is only for batch runs; remove it (an interactive run has one pod)"))
        if self.max_runtime > MAX_RUNTIME_LIMIT:
            found.append(Issue("maxRuntime", "is longer than 7d; split the run, with checkpoint.from: run:<name> continuing it"))
        clash = next((r for r in RUN_RESERVED_PATHS if self.datasets and overlaps(self.datasets.path, r)), None)
        if self.datasets is not None and clash:
            found.append(Issue("datasets.path", f"{self.datasets.path} overlaps {clash}, which simfleet mounts itself"))
        if not glue_inside_project(self.glue):
            found.append(Issue("glue", f"{self.glue!r} must be a path inside the project, like glue/trot.py"))
        return found + label_problems(self.labels)

    @property
    def parallel_pods(self) -> int:
        return self.parallelism or len(self.seeds) if self.mode == "batch" else 1

    @property
    def capacity(self) -> CapacityType:
        return "spot" if self.mode == "batch" else "onDemand"


def run_platform_rules(platform: PlatformConfig, runs: Iterable[tuple[int, RunSpec]]) -> list[Issue]:
    """Rules that need the platform: capacity type, image sources, GPUs, CPU and memory per node."""
    issues: list[Issue] = []
    gpu = platform.node_groups.gpu
    for index, run in runs:
        path = f"runs[{index}]"
        if run.capacity not in gpu.capacity:
            issues.append(
                Issue(
                    f"{path}.mode",
                    f"{run.mode} runs need {run.capacity} GPU capacity; add {run.capacity} to platform.nodeGroups.gpu.capacity",
                )
            )
        for slot in IMAGE_SLOTS:
            problem = image_source_problem(getattr(run.images, slot), platform.repositories, platform.image_allow_list)
            if problem:
                issues.append(Issue(f"{path}.images.{slot}", problem))
        issues += workload_fit_issues(path, run.gpus, run.datasets is not None, platform)
        issues += node_fit_issues(path, run.cpu, run.memory, platform, "GPU")
    return issues


def run_cross_rules(
    runs: list[tuple[int, RunSpec]],
    base_dir: Path,
    lint_glue: Callable[[Path], list[str]] | None,
    invalid: Collection[str] = (),
    every_run_known: bool = True,
) -> list[Issue]:
    """Continuations name a run of the stack that can be continued, chains do not loop, and every glue file lints.

    `invalid` holds the names of runs whose entries have errors of their own: a continuation of one of them is not
    reported as naming no run (the run exists; its own errors are what to fix). Nor is any missing source when
    `every_run_known` is false (a run file could not be read, so its runs are unknown).
    """
    issues: list[Issue] = []
    by_name: dict[str, tuple[int, RunSpec]] = {}
    for index, run in runs:
        by_name.setdefault(run.name, (index, run))  # a second entry of the same name is reported by entry_rules
    for index, run in runs:
        source = run.checkpoint.from_run
        if source is None or source in invalid:
            continue
        path = f"runs[{index}].checkpoint.from"
        if source == run.name:
            issues.append(Issue(path, "a run cannot continue from itself; name the run whose checkpoint it starts from"))
        elif source not in by_name and not every_run_known:
            continue
        elif source not in by_name:
            hint = did_you_mean(source, list(by_name)) or "; add that run, or start from an s3:// checkpoint"
            issues.append(Issue(path, f"no run named {source!r} in this stack{hint}"))
        elif not by_name[source][1].checkpoint.save:
            issues.append(Issue(path, f"run {source!r} does not save a checkpoint (checkpoint.save is false); set it true there"))
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
        issues.append(
            Issue(
                f"runs[{by_name[cycle[0]][0]}].checkpoint.from",
                f"checkpoint chain loops: {' -> '.join(cycle)}; one run in it must start fresh (null) or from an s3:// "
                "checkpoint",
            )
        )
    if lint_glue is None:
        from workloads.contract import lint_glue as default_lint

        lint_glue = default_lint
    linted: dict[str, list[str]] = {}
    for index, run in runs:
        if not glue_inside_project(run.glue):
            continue  # reported by the run's own rules; never read a file outside the project
        if run.glue not in linted:
            linted[run.glue] = lint_glue(base_dir / run.glue)
        issues += [Issue(f"runs[{index}].glue", f"{run.glue}: {problem}") for problem in linted[run.glue]]
    return issues


def _checkpoint_cycle(by_name: dict[str, tuple[int, RunSpec]]) -> list[str]:
    """The first loop of two or more runs in the continuation chains (a run naming itself is reported on its own)."""
    for start in by_name:
        seen = [start]
        current = by_name[start][1].checkpoint.from_run
        while current in by_name and current != seen[-1]:
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
