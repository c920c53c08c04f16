"""`simfleet:jobs`: generic batch Jobs (preprocessing, evaluation), and the rules that need the platform.

A job is the user's image and command run once per shard as an Indexed Job, with the same run-once semantics as a
simulation run (workloads/provider.py): outputs under jobs/<name>/<hash>/shard-<i>/ in the artifacts bucket, the
shared `datasets` claim when asked for, and the Pushgateway's address when metrics are on.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

from pydantic import Field, field_validator

from config.errors import Issue
from config.fit import node_fit_issues, workload_fit_issues
from config.platform import PlatformConfig
from config.runs import label_problems
from config.services import ENV_NAME_RE
from config.types import (
    MAX_RUNTIME_LIMIT,
    RUN_NAME_RE,
    CapacityType,
    Duration,
    ImageString,
    Model,
    Quantity,
    absolute_dir,
    image_source_problem,
    overlaps,
    quantity_value,
)

JOB_NAME_MAX = 50
# What the output-uploader beside the work container requests (workloads/renderers/job.py UPLOADER_RESOURCES).
UPLOADER_MILLICPU = 100
UPLOADER_MEMORY_BYTES = 256 * 2**20
MAX_SHARDS = 1000
# Paths simfleet mounts in the work container itself (workloads/renderers/job.py); a job's own paths stay clear.
RESERVED_PATHS = ("/dev/shm", "/opt/simfleet", "/simfleet", "/tmp")
# Environment variables simfleet or the Job controller set on the work container; `env` may not override them.
RESERVED_ENV_PREFIXES = ("SIMFLEET_", "AWS_")
RESERVED_ENV = ("JOB_COMPLETION_INDEX", "HOME")


class Datasets(Model):
    """The shared `datasets` claim (EFS, ReadWriteMany), mounted in every shard's work container."""

    path: str = Field("/datasets", description="Where the claim is mounted.")
    read_only: bool = Field(True, description="false lets the shards write into the shared volume.")

    @field_validator("path")
    @classmethod
    def _path(cls, path: str) -> str:
        return absolute_dir(path)


class Outputs(Model):
    """A directory each shard writes; uploaded to s3://<artifacts>/jobs/<name>/<hash>/shard-<i>/outputs/<attempt>/ when the shard succeeds."""

    path: str = Field("/outputs", description="Directory in the work container whose files are uploaded.")

    @field_validator("path")
    @classmethod
    def _path(cls, path: str) -> str:
        return absolute_dir(path)


class JobSpec(Model):
    name: str = Field(description=f"DNS-1123 label starting with a letter, at most {JOB_NAME_MAX} characters.")
    image: ImageString = Field(description="repo:tag from the stack's ECR, or a full URI under platform.imageAllowList.")
    command: list[Annotated[str, Field(min_length=1)]] = Field(
        min_length=1,
        description="The program and its arguments, run by simfleet's wrapper (/bin/sh) so the uploader knows when it "
        "ended; the image's ENTRYPOINT is not used.",
    )
    args: list[str] = Field(default_factory=list, description="More arguments after command.")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables.")
    shards: int = Field(1, ge=1, le=MAX_SHARDS, description="Pods to complete, one per JOB_COMPLETION_INDEX 0..shards-1.")
    parallelism: int | None = Field(None, ge=1, description="Shards at once; defaults to all of them.")
    gpus: int = Field(1, ge=1, le=8, description="nvidia.com/gpu per shard (request = limit).")
    cpu: Quantity = Field("3", description="CPU per shard.")
    memory: Quantity = Field("12Gi", description="Memory per shard, not counting shmSize (the limit adds it).")
    shm_size: Quantity | None = Field(None, description="A memory-backed /dev/shm of this size (PyTorch DataLoader workers).")
    capacity: CapacityType = Field("spot", description="GPU capacity type; a reclaimed spot node retries the shard.")
    max_runtime: Duration = Field(
        2 * 3600, gt=0, description="Run time of one shard; the Job's activeDeadlineSeconds adds waves, startup and a retry."
    )
    ttl_after_finished: Duration = Field(600, ge=0, description="ttlSecondsAfterFinished of the Job.")
    datasets: Datasets | None = Field(None, description="Mount the shared datasets claim (needs platform.sharedStorage).")
    outputs: Outputs = Field(default_factory=Outputs)
    spread_across_nodes: bool = Field(False, description="At most one shard of this job per node (pod anti-affinity).")
    labels: dict[str, str] = Field(default_factory=dict)
    rerun: int = Field(0, ge=0, description="Bump to run the same spec again as a fresh job.")
    queue: str | None = Field(None, description="The Kueue queue (a team's) that admits the job; the stack's default.")

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        # A field rule (not in problems()), so a bad name is reported beside the entry's other field errors.
        if not RUN_NAME_RE.match(name) or len(name) > JOB_NAME_MAX:
            raise ValueError(
                f"{name!r} must be a DNS-1123 label that starts with a letter and has at most {JOB_NAME_MAX} characters "
                "(the Job and pod names are built from it)"
            )
        return name

    @property
    def parallel_pods(self) -> int:
        return min(self.parallelism or self.shards, self.shards)

    @property
    def memory_limit_bytes(self) -> int:
        """memory + shmSize: a memory-backed emptyDir is charged to the pod's memory cgroup."""
        shm = quantity_value(self.shm_size) if self.shm_size else 0
        return int(quantity_value(self.memory) + shm)

    def problems(self) -> list[Issue]:
        """Rules across this entry's fields, each with its path relative to the entry (all of them at once)."""
        found: list[Issue] = []
        if self.parallelism is not None and self.parallelism > self.shards:
            found.append(Issue("parallelism", f"{self.parallelism} is more than shards ({self.shards})"))
        if self.max_runtime > MAX_RUNTIME_LIMIT:
            found.append(Issue("maxRuntime", "longer than 7d; split the job into more shards"))
        for key in self.env:
            if not ENV_NAME_RE.match(key):
                found.append(Issue(f"env.{key}", f"{key!r} is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"))
            elif key in RESERVED_ENV or key.startswith(RESERVED_ENV_PREFIXES):
                found.append(Issue(f"env.{key}", f"{key} is set by simfleet, IRSA or the Job controller; choose another name"))
        if self.shm_size is not None and quantity_value(self.shm_size) <= 0:
            found.append(Issue("shmSize", "must be more than 0 (leave it out for the container runtime's 64Mi)"))
        paths = {"outputs.path": self.outputs.path}
        if self.datasets is not None:
            paths["datasets.path"] = self.datasets.path
        for where, path in paths.items():
            clash = next((r for r in RESERVED_PATHS if overlaps(path, r)), None)
            if clash:
                found.append(Issue(where, f"{path} overlaps {clash}, which simfleet mounts itself"))
        if self.datasets is not None and overlaps(self.datasets.path, self.outputs.path):
            found.append(Issue("datasets.path", f"{self.datasets.path} overlaps outputs.path ({self.outputs.path})"))
        return found + label_problems(self.labels)


def _mebibytes(amount: int) -> str:
    """Bytes as a quantity people read: whole Mi when exact (what Gi and Mi requests add up to)."""
    return f"{amount // 2**20}Mi" if amount % 2**20 == 0 else str(amount)


def job_platform_rules(platform: PlatformConfig, jobs: Iterable[tuple[int, JobSpec]]) -> list[Issue]:
    """Rules that need the platform: image source, capacity type, GPUs and memory per node, datasets, spreading."""
    issues: list[Issue] = []
    gpu = platform.node_groups.gpu
    for index, job in jobs:
        path = f"jobs[{index}]"
        problem = image_source_problem(job.image, platform.repositories, platform.image_allow_list)
        if problem:
            issues.append(Issue(f"{path}.image", problem))
        if job.capacity not in gpu.capacity:
            issues.append(
                Issue(
                    f"{path}.capacity",
                    f"the stack has no {job.capacity} GPU node group; add {job.capacity} to "
                    "platform.nodeGroups.gpu.capacity or change the job's capacity",
                )
            )
        fit = workload_fit_issues(path, job.gpus, job.datasets is not None, platform)
        issues += fit
        if any(i.path == f"{path}.gpus" for i in fit):
            continue
        # The pod is the work container plus the uploader beside it (workloads/renderers/job.py UPLOADER_*).
        pod_cpu = f"{round(quantity_value(job.cpu) * 1000) + UPLOADER_MILLICPU}m"
        fit = node_fit_issues(path, pod_cpu, str(int(quantity_value(job.memory)) + UPLOADER_MEMORY_BYTES), platform, "GPU")
        issues += [Issue(i.path, f"with the uploader's {UPLOADER_MILLICPU}m CPU and 256Mi: {i.message}") for i in fit]
        if job.shm_size is not None and not any(i.path == f"{path}.memory" for i in fit):
            together = node_fit_issues(path, None, _mebibytes(job.memory_limit_bytes + UPLOADER_MEMORY_BYTES), platform, "GPU")
            issues += [
                Issue(
                    f"{path}.shmSize",
                    f"memory ({job.memory}), shmSize ({job.shm_size}) and the uploader's 256Mi together: {i.message}",
                )
                for i in together
            ]
        # One shard per node: every shard running at once needs its own node of this capacity type.
        if job.spread_across_nodes and job.parallel_pods > gpu.max_size:
            issues.append(
                Issue(
                    f"{path}.spreadAcrossNodes",
                    f"{job.parallel_pods} shards at once on separate nodes need {job.parallel_pods} GPU nodes, but "
                    f"the {job.capacity} group's maxSize is {gpu.max_size}; lower parallelism or raise maxSize",
                )
            )
    return issues
