"""Pure rendering of one batch job: spec + context + identity -> its runtime ConfigMap and its Indexed Job.

The pod of shard i:
- main `work`: the user's image and command, started by simfleet's wrapper (job-entry.sh, POSIX sh) which stops the
  program at maxRuntime, forwards SIGTERM, and sends its result over the uploader's result channel (a FIFO in the
  marker directory, which this container mounts read-only: the program cannot forge a result there);
- main `output-uploader` (job-upload.sh, AWS CLI image, the job role): records the attempt, reads the result channel,
  uploads the outputs directory under the attempt's own prefix and then index.json, last, to
  s3://<artifacts>/jobs/<job>/<hash>/shard-<i>/, and deletes the shard's Pushgateway group once Prometheus had time to
  scrape it.
Only the uploader gets AWS credentials; the work container reads the shared datasets claim and writes its outputs
directory, nothing else. Nothing rendered here moves the job's hash (workloads/job_identity.py).
"""

from __future__ import annotations

import functools
from typing import Any

import naming
import versions
from config import JobSpec
from workloads import budget as timing
from workloads.identity import resolve_image
from workloads.job_identity import JobContext, JobIdentity
from workloads.renderers.common import (
    IRSA_SKIP_ANNOTATION,
    RUNTIME_DIR,
    SCRIPTS_DIR,
    Runtime,
    container,
    env,
    gpu_toleration,
    pod_security,
    queue_labels,
    scratch_volumes,
    shared_runtime_configmap,
    workload_labels,
    workload_metadata,
)

MARKER_DIR = "/simfleet"
RESULT_FIFO = f"{MARKER_DIR}/result"  # created by the uploader; the wrapper writes its one-line result into it
JOB_SCRIPTS = ("job-entry.sh", "job-upload.sh", "common.sh", "term.sh")
TIMEOUT_EXIT_CODE = 124  # job-entry.sh's exit code when maxRuntime ran out (as `timeout` reports it)
BACKOFF_LIMIT_PER_INDEX = 1  # one retry per shard for a transient failure; reclaims and drains do not count
# config/jobs.py counts these with the work container's requests against the node (UPLOADER_MILLICPU, _MEMORY_BYTES).
UPLOADER_RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "256Mi"}}


@functools.cache
def job_runtime_files() -> dict[str, str]:
    return {name: (SCRIPTS_DIR / name).read_text() for name in JOB_SCRIPTS}


@functools.cache
def job_runtime() -> Runtime:
    """The jobs' shared runtime ConfigMap's data and content hash: computed once per process."""
    return Runtime.of(job_runtime_files())


def job_budget(spec: JobSpec, shards: int | None = None) -> timing.JobBudget:
    return timing.JobBudget.of(spec.max_runtime, spec.shards if shards is None else shards, spec.parallel_pods)


def bytes_quantity(amount: int) -> str:
    """A byte count as the largest binary unit that divides it exactly: 30064771072 -> 28Gi."""
    for unit, factor in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if amount % factor == 0:
            return f"{amount // factor}{unit}"
    return str(amount)


def render_job(
    spec: JobSpec, ctx: JobContext, identity: JobIdentity, shards: tuple[int, ...] | None = None
) -> list[dict[str, Any]]:
    """The job's objects in apply order: its runtime ConfigMap, then the Job.

    `shards` narrows the Job to the shards still to run (the provider leaves out shards that already wrote their
    index.json, after a lost state); the Job's completion index is then a position in that list, which both pod
    scripts turn back into the shard number (SIMFLEET_SHARD_LIST), so the program's JOB_COMPLETION_INDEX and
    SIMFLEET_SHARD, its outputs and its Pushgateway group stay the shard's own.
    """
    shards = identity.shards if shards is None else shards
    budget = job_budget(spec, len(shards))
    runtime = shared_runtime_configmap(ctx.namespace, job_runtime(), "job-runtime")
    return [runtime, _job(spec, ctx, identity, shards, budget)]


def job_labels(spec: JobSpec, component: str) -> dict[str, str]:
    return workload_labels("simfleet-job", spec.name, component, spec.labels, {naming.JOB_LABEL: spec.name})


def _metadata(name: str, spec: JobSpec, ctx: JobContext, component: str, spec_hash: str) -> dict[str, Any]:
    return workload_metadata(name, ctx.namespace, job_labels(spec, component), spec_hash)


def _job(
    spec: JobSpec, ctx: JobContext, identity: JobIdentity, shards: tuple[int, ...], budget: timing.JobBudget
) -> dict[str, Any]:
    metadata = _metadata(spec.name, spec, ctx, "batch", identity.spec_hash)
    metadata["labels"].update(queue_labels(spec.queue or ctx.default_queue, naming.PRIORITY_BATCH))
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            # Kueue admits (unsuspends) it when its queue has room for `parallelism` shards at once.
            "suspend": True,
            "completionMode": "Indexed",
            "completions": len(shards),
            "parallelism": min(spec.parallel_pods, len(shards)),
            # Per shard, so one bad shard cannot use up the retries of the others (GA in Kubernetes 1.33).
            "backoffLimitPerIndex": BACKOFF_LIMIT_PER_INDEX,
            "activeDeadlineSeconds": budget.deadline_seconds,
            "ttlSecondsAfterFinished": spec.ttl_after_finished,
            "podFailurePolicy": {
                "rules": [
                    # A spot reclaim or node drain marks the pod DisruptionTarget: retried without using up a retry.
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                    # maxRuntime ran out (job-entry.sh exits 124): the same program would only run out again.
                    {
                        "action": "FailIndex",
                        "onExitCodes": {"containerName": "work", "operator": "In", "values": [TIMEOUT_EXIT_CODE]},
                    },
                ]
            },
            # The only value podFailurePolicy allows (and its default); a replacement starts only once the failed pod
            # has fully terminated, so two pods of one shard never write its prefix at once.
            "podReplacementPolicy": "Failed",
            "template": _pod_template(spec, ctx, identity, shards, budget),
        },
    }


def _pod_template(
    spec: JobSpec, ctx: JobContext, identity: JobIdentity, shards: tuple[int, ...], budget: timing.JobBudget
) -> dict[str, Any]:
    labels = job_labels(spec, "batch")
    base = _base_env(spec, ctx, identity, shards)
    work, work_volumes = _work(spec, ctx, base)
    uploader = _uploader(spec, ctx, identity.prefix, base, budget)
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": ctx.service_account,
        # Neither container talks to the Kubernetes API; IRSA mounts its own projected token for the uploader.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": budget.grace_seconds,
        "securityContext": pod_security(),
        "nodeSelector": _node_selector(spec),
        "tolerations": [gpu_toleration()],
        "containers": [work, uploader],
        "volumes": [
            {"name": "runtime", "configMap": {"name": job_runtime().name}},
            {"name": "marker", "emptyDir": {"sizeLimit": "1Mi"}},
            {"name": "outputs", "emptyDir": {}},
            *work_volumes,
            *scratch_volumes([work, uploader]),
        ],
    }
    if spec.spread_across_nodes:
        pod["affinity"] = {
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "labelSelector": {"matchLabels": {naming.JOB_LABEL: spec.name}},
                        "topologyKey": "kubernetes.io/hostname",
                    }
                ]
            }
        }
    return {
        "metadata": {
            "labels": labels,
            "annotations": {
                naming.SPEC_HASH_ANNOTATION: identity.spec_hash,
                IRSA_SKIP_ANNOTATION: "work",
                # Losing the node mid-shard wastes the shard; scale-down waits for the pod to finish.
                "cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
            },
        },
        "spec": pod,
    }


def _node_selector(spec: JobSpec) -> dict[str, str]:
    """GPU nodes. `capacity: onDemand` pins on-demand; `spot` names no capacity type, so Kueue gives the job its spot
    flavor first and its on-demand flavor when spot has no room (the admitted flavor adds its own selector)."""
    selector = {naming.NODE_POOL_LABEL: "gpu"}
    if spec.capacity == "onDemand":
        selector[naming.CAPACITY_TYPE_LABEL] = naming.EKS_CAPACITY["onDemand"]
    return selector


def _base_env(spec: JobSpec, ctx: JobContext, identity: JobIdentity, shards: tuple[int, ...]) -> list[dict[str, Any]]:
    base: list[dict[str, Any]] = [
        env("SIMFLEET_JOB", spec.name),
        env("SIMFLEET_SPEC_HASH", identity.spec_hash),
        env("SIMFLEET_SHARDS", str(spec.shards)),
        env("SIMFLEET_RESULT_FIFO", RESULT_FIFO),
    ]
    if shards != identity.shards:
        # A Job for some shards only: its completion index is a position in this list (see render_job).
        base.append(env("SIMFLEET_SHARD_LIST", " ".join(str(shard) for shard in shards)))
    if ctx.pushgateway_url:
        base.append(env("SIMFLEET_PUSHGATEWAY_URL", ctx.pushgateway_url))
    return base


def _work(spec: JobSpec, ctx: JobContext, base: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    memory = bytes_quantity(spec.memory_limit_bytes)
    resources = {
        "requests": {"cpu": spec.cpu, "memory": memory, naming.GPU_RESOURCE: str(spec.gpus)},
        "limits": {"memory": memory, naming.GPU_RESOURCE: str(spec.gpus)},
    }
    mounts = {"runtime": RUNTIME_DIR, "marker": MARKER_DIR, "outputs": spec.outputs.path}
    # The marker directory read-only: the wrapper writes into the uploader's FIFO there (a FIFO is writable on a
    # read-only mount), and the program can create nothing in it.
    read_only: tuple[str, ...] = ("runtime", "marker")
    volumes: list[dict[str, Any]] = []
    extra = [
        env("SIMFLEET_OUTPUTS_DIR", spec.outputs.path),
        env("SIMFLEET_MAX_RUNTIME_SECONDS", str(spec.max_runtime)),
        env("SIMFLEET_TERM_SECONDS", str(timing.JOB_TERM_SECONDS)),
    ]
    if spec.shm_size:
        # A sized memory-backed /dev/shm (the runtime's default is 64Mi); its pages count toward the memory limit,
        # which is why the limit above is memory + shmSize.
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.shm_size}})
        mounts["dshm"] = "/dev/shm"
    if spec.datasets is not None:
        if not ctx.datasets_claim:
            raise ValueError(f"job {spec.name}: datasets needs the shared datasets claim; platform.sharedStorage is off")
        volumes.append(
            {
                "name": "datasets",
                "persistentVolumeClaim": {"claimName": ctx.datasets_claim, "readOnly": spec.datasets.read_only},
            }
        )
        mounts["datasets"] = spec.datasets.path
        if spec.datasets.read_only:
            read_only += ("datasets",)
        extra.append(env("SIMFLEET_DATASETS_DIR", spec.datasets.path))
    user_env = [env(key, value) for key, value in sorted(spec.env.items())]
    work = container(
        "work",
        resolve_image(spec.image, ctx.registry_url),
        [*base, *extra, *user_env],
        mounts,
        resources,
        read_only=read_only,
        command=["/bin/sh", f"{RUNTIME_DIR}/job-entry.sh", *spec.command],
        args=list(spec.args),
    )
    return work, volumes


def _uploader(
    spec: JobSpec, ctx: JobContext, prefix: str, base: list[dict[str, Any]], budget: timing.JobBudget
) -> dict[str, Any]:
    extra = [
        env("SIMFLEET_PREFIX", prefix),
        env("SIMFLEET_ARTIFACTS_BUCKET", ctx.artifacts_bucket),
        env("SIMFLEET_OUTPUTS_DIR", "/outputs"),
        # The user's image may take long to pull; the wrapper's channel then tells when the program ends.
        env("SIMFLEET_START_WAIT_SECONDS", str(timing.STARTUP_SECONDS)),
        env("SIMFLEET_DONE_WAIT_SECONDS", str(budget.done_wait_seconds)),
        env("SIMFLEET_TERM_WAIT_SECONDS", str(budget.term_wait_seconds)),
        env("SIMFLEET_KIND_TAG", naming.ARTIFACT_KIND_TAG),
        env("SIMFLEET_METRICS_LINGER_SECONDS", str(timing.METRICS_LINGER_SECONDS)),
        env("AWS_REGION", ctx.region),
        env("AWS_DEFAULT_REGION", ctx.region),
    ]
    return container(
        "output-uploader",
        versions.AWS_CLI_IMAGE,
        [*base, *extra],
        {"runtime": RUNTIME_DIR, "marker": MARKER_DIR, "outputs": "/outputs"},
        UPLOADER_RESOURCES,
        read_only=("runtime", "outputs"),
        read_only_root=True,
        command=["/bin/bash", f"{RUNTIME_DIR}/job-upload.sh"],
    )
