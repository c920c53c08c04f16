"""Pure rendering of one run: RunSpec + RunContext + its identity -> the Kubernetes objects to apply.

Nothing here touches Pulumi, AWS or a cluster, so the offline plan, the policies, the tests and the dynamic
provider (which renders at create time from the SimRun's small inputs) all see exactly the objects applied.
The identity (hash, S3 locations) lives in workloads/identity.py; nothing rendered here moves a hash.

The pod (DESIGN.md "Pod shape per run"):
- init `checkpoint-fetch` fetches checkpoint.from to /checkpoints/in.mstate, waiting for a `run:<name>`
  source that is still running;
- native sidecars `unitree-sim` and `monty` (initContainers with restartPolicy Always) run the simulation and
  the brain, and are stopped by the kubelet once the main containers exit, so the Job completes;
- main containers `glue` (the user's step, from the shared glue ConfigMap) and `artifact-uploader` (ships
  /artifacts, the out-checkpoint and index.json to S3, then exits).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import naming
from config import RunSpec, quantity_value
from workloads import contract
from workloads.identity import RunContext, RunIdentity, SourceRef, glue_config_map_name, resolved_images, run_prefix

# AWS's official CLI image (aws/aws-cli docker/Dockerfile: Amazon Linux 2 + bash, coreutils and jq; ENTRYPOINT
# aws). 2.31.23 is a tag pinned in public repositories; resolve and pin its digest before relying on it in prod.
# The image allow-list policy must admit this exact reference.
AWS_CLI_IMAGE = "public.ecr.aws/aws-cli/aws-cli:2.31.23"

# Native sidecars (initContainers with restartPolicy Always) and per-index Job backoff are GA from 1.33.
MIN_KUBERNETES_VERSION = (1, 33)

# Every container runs as this uid/gid: runAsNonRoot alone would refuse root-default images (the AWS CLI image)
# instead of running them unprivileged. Run images must work as this user.
RUN_UID = 1000

# Mount points shared between containers.
CHECKPOINTS_DIR = "/checkpoints"
ARTIFACTS_DIR = "/artifacts"
GLUE_DIR = "/glue"
CONTRACT_DIR = "/contract"
CHECKPOINT_IN = f"{CHECKPOINTS_DIR}/in.mstate"
CHECKPOINT_OUT = f"{CHECKPOINTS_DIR}/out.mstate"
DONE_MARKER = f"{CHECKPOINTS_DIR}/.done"  # glue's exit code; the uploader starts when it appears
STARTED_MARKER = f"{CHECKPOINTS_DIR}/.started"  # pod start time for index.json
# The storage lifecycle rules expire artifacts by this object tag (value: logs | videos | metrics).
ARTIFACT_KINDS = naming.ARTIFACT_KINDS
ARTIFACT_KIND_TAG = naming.ARTIFACT_KIND_TAG
VIEWPORT_POD_LABEL = naming.VIEWPORT_POD_LABEL

# The glue bridge's ZeroMQ endpoints inside the pod (localhost only; nothing is exposed).
OBS_ENDPOINT = "tcp://127.0.0.1:5555"  # unitree-sim PUB -> glue SUB
ACTION_ENDPOINT = "tcp://127.0.0.1:5556"  # glue PUSH -> unitree-sim PULL
MONTY_ENDPOINT = "tcp://127.0.0.1:5557"  # glue REQ -> monty REP

# Time budget. Glue stops early enough to leave the brain save and the upload inside the deadline.
UPLOAD_MARGIN_MAX = 15 * 60
FETCH_RETRY_SECONDS = 120  # an s3:// checkpoint.from gets this long to appear (transient errors, eventual IAM)
FETCH_POLL_SECONDS = 30
BACKOFF_LIMIT = 1  # one retry for a transient failure (an S3 hiccup); a buggy glue fails fast
# Share of the run's cpu/memory per container; the simulator renders and steps physics, so it gets most.
SHARES = {"unitree-sim": 0.6, "monty": 0.25, "glue": 0.1, "artifact-uploader": 0.05}
FETCH_RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "256Mi"}}

# The AWS Load Balancer Controller provisions an NLB for Services of this class (LBC docs, guide/service/nlb).
NLB_CLASS = "service.k8s.aws/nlb"
NLB_ANNOTATIONS = {
    # LBC defaults to an internal NLB; the viewport is reached from the office, restricted by source ranges.
    "service.beta.kubernetes.io/aws-load-balancer-scheme": "internet-facing",
    # ip targets send traffic straight to the pod (VPC CNI), with no NodePort hop.
    "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip",
}
# Only the two S3 containers get IRSA credentials; the webhook skips these (amazon-eks-pod-identity-webhook
# pkg/handler: pod annotation eks.amazonaws.com/skip-containers, applies to initContainers and containers).
IRSA_SKIP_ANNOTATION = "eks.amazonaws.com/skip-containers"
NO_AWS_CREDENTIALS = ("unitree-sim", "monty", "glue")


def job_deadline(spec: RunSpec, source: SourceRef | None) -> int:
    """activeDeadlineSeconds of the run's Job: its maxRuntime, plus its source's deadline when it may wait for it."""
    return spec.max_runtime + (source.deadline_seconds if source is not None else 0)


def render_run(
    spec: RunSpec,
    ctx: RunContext,
    identity: RunIdentity,
    glue_config_map: str,
    source: SourceRef | None = None,
    seeds: tuple[int, ...] | None = None,
) -> list[dict[str, Any]]:
    """The run's objects in apply order: its runtime ConfigMap, the viewport Service if any, then the Job.

    `seeds` narrows the Job to the seeds still to run (the provider leaves out seeds that already finished at
    this hash, after a lost state); the prefixes stay those of the declared seeds.
    """
    spec_hash = identity.spec_hash
    objects = [runtime_configmap(spec, ctx, spec_hash)]
    if spec.viewport is not None:
        objects.append(viewport_service(spec, ctx, spec_hash))
    deadline = job_deadline(spec, source)
    budget = _Budget.of(spec, deadline)
    wait = source.deadline_seconds if source is not None else FETCH_RETRY_SECONDS
    pod = _pod_template(
        spec,
        ctx,
        spec_hash,
        glue_config_map,
        source.checkpoint_uri if source is not None else spec.checkpoint.from_,
        source.index_uri if source is not None else None,
        wait,
        budget,
        tuple(spec.seeds) if seeds is None else seeds,
    )
    objects.append(_job(spec, ctx, spec_hash, pod, budget, tuple(spec.seeds) if seeds is None else seeds))
    return objects


def glue_configmap(namespace: str, sha256: str, source: str) -> dict[str, Any]:
    """The shared glue ConfigMap: one per glue content, used by every run with that glue (Pulumi manages it)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": glue_config_map_name(sha256),
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "simfleet", "app.kubernetes.io/component": "glue"},
            "annotations": {naming.GLUE_SHA_ANNOTATION: sha256},
        },
        # Content-addressed, so it never changes: immutable spares the kubelets a watch per mount.
        "immutable": True,
        "data": {contract.GLUE_FILE: source},
    }


DEFAULT_TTL_SECONDS: int = RunSpec.model_fields["ttl_after_finished"].default


def user_labels(labels: dict[str, str]) -> dict[str, str]:
    """A run's `labels` as Kubernetes labels: simfleet.io/<key>, never one of simfleet's own keys."""
    return {f"simfleet.io/{key}": value for key, value in sorted(labels.items()) if key not in naming.RESERVED_RUN_LABEL_KEYS}


def run_labels(spec: RunSpec, component: str) -> dict[str, str]:
    labels = user_labels(spec.labels)
    labels.update(
        {
            "app.kubernetes.io/name": "simfleet-run",
            "app.kubernetes.io/instance": spec.name,
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/part-of": "simfleet",
            "app.kubernetes.io/managed-by": "pulumi",
            naming.RUN_LABEL: spec.name,
            "simfleet.io/profile": spec.profile.rstrip("-_."),  # label values must end alphanumeric
            "simfleet.io/mode": spec.mode,
        }
    )
    if len(spec.seeds) == 1:
        labels["simfleet.io/seed"] = str(spec.seeds[0])
    return labels


def _metadata(name: str, spec: RunSpec, ctx: RunContext, component: str, spec_hash: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": ctx.namespace,
        "labels": run_labels(spec, component),
        "annotations": {naming.SPEC_HASH_ANNOTATION: spec_hash},
    }


def runtime_configmap(spec: RunSpec, ctx: RunContext, spec_hash: str) -> dict[str, Any]:
    """The run's own ConfigMap: simfleet's contract files, rendered from this code when the Job is created.

    Owned by the Job, so it lives exactly as long as the Job: a Job created (or admitted) long after a simfleet
    upgrade still finds the files it was rendered with.
    """
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(runtime_configmap_name(spec.name), spec, ctx, "runtime", spec_hash),
        # Runs are replaced, never edited; immutable ConfigMaps also spare the kubelets thousands of watches.
        "immutable": True,
        "data": dict(contract.contract_files()),
    }


def runtime_configmap_name(run: str) -> str:
    return f"{run}-runtime"


def viewport_service(spec: RunSpec, ctx: RunContext, spec_hash: str) -> dict[str, Any]:
    assert spec.viewport is not None
    metadata = _metadata(f"{spec.name}-viewport", spec, ctx, "viewport", spec_hash)
    metadata["annotations"].update(NLB_ANNOTATIONS)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "type": "LoadBalancer",
            "loadBalancerClass": NLB_CLASS,
            "loadBalancerSourceRanges": [str(cidr) for cidr in spec.viewport.allowed_cidrs],
            "selector": {naming.RUN_LABEL: spec.name, VIEWPORT_POD_LABEL: "true"},
            "ports": [
                {"name": name, "port": port, "targetPort": port, "protocol": protocol}
                for name, port, protocol in naming.VIEWPORT_PORTS
            ],
        },
    }


@dataclass(frozen=True)
class _Budget:
    """How the run's time is spent: the Job deadline, and per pod the glue's run time and the upload margin."""

    deadline: int
    glue_seconds: int
    upload_wait_seconds: int

    @classmethod
    def of(cls, spec: RunSpec, deadline: int | None) -> _Budget:
        # activeDeadlineSeconds covers the whole Job, so a sweep with more seeds than parallel pods runs in waves.
        waves = math.ceil(len(spec.seeds) / spec.parallel_pods)
        per_pod = max(1, spec.max_runtime // waves)
        margin = min(UPLOAD_MARGIN_MAX, per_pod // 5)
        return cls(deadline or spec.max_runtime, per_pod - margin, per_pod - margin // 2)


def _job(
    spec: RunSpec, ctx: RunContext, spec_hash: str, pod: dict[str, Any], budget: _Budget, seeds: tuple[int, ...]
) -> dict[str, Any]:
    job: dict[str, Any] = {
        "activeDeadlineSeconds": budget.deadline,
        "ttlSecondsAfterFinished": spec.ttl_after_finished,
        # A spot reclaim or node drain marks the pod DisruptionTarget; it is retried without using up a retry.
        "podFailurePolicy": {
            "rules": [
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            ]
        },
        # Required with podFailurePolicy; also keeps two pods of one seed from writing the same prefix at once.
        "podReplacementPolicy": "Failed",
        "template": pod,
    }
    if spec.mode == "batch":
        job.update(
            {
                "completionMode": "Indexed",
                "completions": len(seeds),
                "parallelism": min(spec.parallel_pods, len(seeds)),
                # Per seed, so one bad seed cannot use up the retries of the whole sweep (GA in Kubernetes 1.33).
                "backoffLimitPerIndex": BACKOFF_LIMIT,
            }
        )
    else:
        job.update({"completionMode": "NonIndexed", "completions": 1, "parallelism": 1, "backoffLimit": BACKOFF_LIMIT})
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(spec.name, spec, ctx, "simulation", spec_hash),
        "spec": job,
    }


def _pod_template(
    spec: RunSpec,
    ctx: RunContext,
    spec_hash: str,
    glue_config_map: str,
    source_uri: str | None,
    source_index_uri: str | None,
    fetch_wait_seconds: int,
    budget: _Budget,
    seeds: tuple[int, ...],
) -> dict[str, Any]:
    metadata = _metadata(spec.name, spec, ctx, "simulation", spec_hash)
    del metadata["name"], metadata["namespace"]  # the Job controller names its pods
    if spec.viewport is not None:
        metadata["labels"][VIEWPORT_POD_LABEL] = "true"
    metadata["annotations"].update(
        {
            IRSA_SKIP_ANNOTATION: ",".join(NO_AWS_CREDENTIALS),
            # Losing the node mid-run wastes the whole run; scale-down waits for the pod to finish.
            "cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
        }
    )
    images = resolved_images(spec, ctx.registry_url)
    env = _base_env(spec, ctx, spec_hash, seeds)
    resources = _resources(spec)
    return {
        "metadata": metadata,
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": ctx.service_account,
            # No container talks to the Kubernetes API; IRSA mounts its own projected token.
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": RUN_UID,
                "runAsGroup": RUN_UID,
                "fsGroup": RUN_UID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "nodeSelector": {
                naming.NODE_POOL_LABEL: "gpu",
                naming.CAPACITY_TYPE_LABEL: naming.EKS_CAPACITY[spec.capacity],
            },
            "tolerations": [
                {
                    "key": naming.GPU_TAINT_KEY,
                    "operator": "Equal",
                    "value": naming.GPU_TAINT_VALUE,
                    "effect": naming.GPU_TAINT_EFFECT,
                }
            ],
            "initContainers": [
                _checkpoint_fetch(env, source_uri, source_index_uri, fetch_wait_seconds),
                _sim(spec, images["sim"], env, resources["unitree-sim"]),
                _monty(images["monty"], env, resources["monty"]),
            ],
            "containers": [
                _glue(spec, images["glue"], env, resources["glue"], budget),
                _uploader(spec, env, resources["artifact-uploader"], budget),
            ],
            "volumes": [
                {"name": "contract", "configMap": {"name": runtime_configmap_name(spec.name)}},
                {"name": "glue", "configMap": {"name": glue_config_map}},
                {"name": "checkpoints", "emptyDir": {}},
                {"name": "artifacts", "emptyDir": {}},
                {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": _shm_size(spec)}},
            ],
        },
    }


# ---------------------------------------------------------------------------------------------
# Containers
# ---------------------------------------------------------------------------------------------


def _container_security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True}


def _container(
    name: str,
    image: str,
    env: list[dict[str, Any]],
    mounts: dict[str, str],
    resources: dict[str, Any],
    read_only: tuple[str, ...] = (),
    **extra: Any,
) -> dict[str, Any]:
    container = {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",  # tags are pinned (config rejects "latest")
        # Fresh dicts per container: shared ones would alias (and show up as YAML anchors in the plan).
        "env": [dict(e) for e in env],
        "resources": resources,
        "securityContext": _container_security(),
        "volumeMounts": [
            {"name": volume, "mountPath": path, **({"readOnly": True} if volume in read_only else {})}
            for volume, path in mounts.items()
        ],
    }
    container.update(extra)
    return container


def _checkpoint_fetch(
    env: list[dict[str, Any]], source_uri: str | None, source_index_uri: str | None, wait_seconds: int
) -> dict[str, Any]:
    extra = [
        _env("HOME", "/tmp"),  # the CLI wants a writable home; the image's is root's
        _env("SIMFLEET_FETCH_WAIT_SECONDS", str(wait_seconds)),
        _env("SIMFLEET_FETCH_POLL_SECONDS", str(FETCH_POLL_SECONDS)),
    ]
    if source_uri:
        extra.append(_env("SIMFLEET_CHECKPOINT_FROM", source_uri))
    if source_index_uri:
        extra.append(_env("SIMFLEET_SOURCE_INDEX", source_index_uri))
    return _container(
        "checkpoint-fetch",
        AWS_CLI_IMAGE,
        [*env, *extra],
        {"contract": CONTRACT_DIR, "checkpoints": CHECKPOINTS_DIR},
        FETCH_RESOURCES,
        read_only=("contract",),
        command=["/bin/bash", "-c", FETCH_SCRIPT],
    )


def _sim(spec: RunSpec, image: str, env: list[dict[str, Any]], resources: dict[str, Any]) -> dict[str, Any]:
    extra = [
        _env("SIMFLEET_OBS_ENDPOINT", OBS_ENDPOINT),
        _env("SIMFLEET_ACTION_ENDPOINT", ACTION_ENDPOINT),
        _env("SIMFLEET_ARTIFACTS_DIR", ARTIFACTS_DIR),
        _env("SIMFLEET_VIEWPORT", str(spec.viewport is not None).lower()),
    ]
    ports: dict[str, Any] = {}
    if spec.viewport is not None:
        ports["ports"] = [
            {"name": name, "containerPort": port, "protocol": protocol} for name, port, protocol in naming.VIEWPORT_PORTS
        ]
    # restartPolicy Always on an init container makes it a native sidecar: it runs beside the main containers
    # and is stopped once they have exited, so the Job can complete.
    return _container(
        "unitree-sim",
        image,
        [*env, *extra],
        {"artifacts": ARTIFACTS_DIR, "dshm": "/dev/shm"},
        resources,
        restartPolicy="Always",
        **ports,
    )


def _monty(image: str, env: list[dict[str, Any]], resources: dict[str, Any]) -> dict[str, Any]:
    # Monty loads /checkpoints/in.mstate when checkpoint-fetch wrote one, else starts a fresh brain with the
    # profile (SIMFLEET_PROFILE), and saves to the path glue asks for.
    extra = [
        _env("SIMFLEET_MONTY_ENDPOINT", MONTY_ENDPOINT),
        _env("SIMFLEET_CHECKPOINT_IN", CHECKPOINT_IN),
        _env("SIMFLEET_ARTIFACTS_DIR", ARTIFACTS_DIR),
    ]
    return _container(
        "monty",
        image,
        [*env, *extra],
        {"checkpoints": CHECKPOINTS_DIR, "artifacts": ARTIFACTS_DIR, "dshm": "/dev/shm"},
        resources,
        restartPolicy="Always",
    )


def _glue(spec: RunSpec, image: str, env: list[dict[str, Any]], resources: dict[str, Any], budget: _Budget) -> dict[str, Any]:
    extra = [
        _env("SIMFLEET_GLUE_FILE", f"{GLUE_DIR}/{contract.GLUE_FILE}"),
        _env("SIMFLEET_ENTRY_POINT", contract.ENTRY_POINT),
        _env("SIMFLEET_OBS_ENDPOINT", OBS_ENDPOINT),
        _env("SIMFLEET_ACTION_ENDPOINT", ACTION_ENDPOINT),
        _env("SIMFLEET_MONTY_ENDPOINT", MONTY_ENDPOINT),
        _env("SIMFLEET_CHECKPOINT_OUT", CHECKPOINT_OUT),
        _env("SIMFLEET_SAVE_CHECKPOINT", str(spec.checkpoint.save).lower()),
        _env("SIMFLEET_ARTIFACTS_DIR", ARTIFACTS_DIR),
        _env("SIMFLEET_STOP_AFTER_SECONDS", str(budget.glue_seconds)),
    ]
    return _container(
        "glue",
        image,
        [*env, *extra],
        {"glue": GLUE_DIR, "checkpoints": CHECKPOINTS_DIR, "artifacts": ARTIFACTS_DIR},
        resources,
        read_only=("glue",),
        command=["/bin/sh", "-c", GLUE_SCRIPT],
    )


def _uploader(spec: RunSpec, env: list[dict[str, Any]], resources: dict[str, Any], budget: _Budget) -> dict[str, Any]:
    extra = [
        _env("HOME", "/tmp"),
        _env("SIMFLEET_SAVE_CHECKPOINT", str(spec.checkpoint.save).lower()),
        _env("SIMFLEET_UPLOAD_WAIT_SECONDS", str(budget.upload_wait_seconds)),
        _env("SIMFLEET_KIND_TAG", ARTIFACT_KIND_TAG),
    ]
    return _container(
        "artifact-uploader",
        AWS_CLI_IMAGE,
        [*env, *extra],
        {"artifacts": ARTIFACTS_DIR, "checkpoints": CHECKPOINTS_DIR},
        resources,
        read_only=("artifacts", "checkpoints"),
        command=["/bin/bash", "-c", UPLOAD_SCRIPT],
    )


def _env(name: str, value: str) -> dict[str, str]:
    return {"name": name, "value": value}


def _base_env(spec: RunSpec, ctx: RunContext, spec_hash: str, seeds: tuple[int, ...]) -> list[dict[str, Any]]:
    """Env every container gets. Several seeds: the seed is SIMFLEET_SEEDS[JOB_COMPLETION_INDEX].

    SIMFLEET_SEEDS lists the seeds this Job runs (all of them, or those left after a lost state); whether keys
    get a seed-<n>/ level follows the declared seeds, so a recreated Job writes where the first one did.
    """
    prefix = run_prefix(spec.name, spec_hash)
    env = [
        _env("SIMFLEET_RUN", spec.name),
        _env("SIMFLEET_SPEC_HASH", spec_hash),
        _env("SIMFLEET_MODE", spec.mode),
        _env("SIMFLEET_PROFILE", spec.profile),
        _env("SIMFLEET_SEEDS", json.dumps(list(seeds), separators=(",", ":"))),
        _env("SIMFLEET_PER_SEED", str(len(spec.seeds) > 1).lower()),
    ]
    if len(spec.seeds) == 1:
        env.append(_env("SIMFLEET_SEED", str(spec.seeds[0])))
    env += [
        _env("SIMFLEET_ARTIFACTS_BUCKET", ctx.artifacts_bucket),
        _env("SIMFLEET_CHECKPOINTS_BUCKET", ctx.checkpoints_bucket),
        _env("SIMFLEET_PREFIX", prefix),
        _env("SIMFLEET_ARTIFACTS_URI", f"s3://{ctx.artifacts_bucket}/{prefix}"),
        _env("SIMFLEET_CHECKPOINTS_URI", f"s3://{ctx.checkpoints_bucket}/{prefix}"),
        # IMDS is closed to pods, so the SDKs cannot discover the region themselves.
        _env("AWS_REGION", ctx.region),
        _env("AWS_DEFAULT_REGION", ctx.region),
    ]
    return env


def _resources(spec: RunSpec) -> dict[str, dict[str, Any]]:
    """spec.cpu/memory are for the whole pod; split them by SHARES. Memory limit = request, no CPU limit."""
    cpu_m = int(quantity_value(spec.cpu) * 1000)
    memory_mi = int(quantity_value(spec.memory) // 2**20)
    out: dict[str, dict[str, Any]] = {}
    for name, share in SHARES.items():
        cpu = f"{max(10, int(cpu_m * share))}m"
        memory = f"{max(64, int(memory_mi * share))}Mi"
        out[name] = {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}}
    gpus = str(spec.gpus)
    # Extended resources must have request == limit; the device plugin hands out whole GPUs.
    out["unitree-sim"]["requests"][naming.GPU_RESOURCE] = gpus
    out["unitree-sim"]["limits"][naming.GPU_RESOURCE] = gpus
    return out


def _shm_size(spec: RunSpec) -> str:
    # Memory-backed /dev/shm counts against the writer's memory limit; a quarter of the pod keeps both in bounds.
    return f"{max(64, int(quantity_value(spec.memory) // 2**20) // 4)}Mi"


# ---------------------------------------------------------------------------------------------
# Scripts (bash in the AWS CLI image, sh in glue-base)
# ---------------------------------------------------------------------------------------------

FETCH_SCRIPT = rf"""set -euo pipefail
date -u +%Y-%m-%dT%H:%M:%SZ > {STARTED_MARKER}
if [ -z "${{SIMFLEET_CHECKPOINT_FROM:-}}" ]; then
  echo "checkpoint-fetch: no checkpoint.from; monty starts with a fresh brain"
  exit 0
fi
deadline=$(( $(date +%s) + SIMFLEET_FETCH_WAIT_SECONDS ))
while true; do
  if aws s3 cp --only-show-errors "$SIMFLEET_CHECKPOINT_FROM" {CHECKPOINT_IN}; then
    echo "checkpoint-fetch: fetched $SIMFLEET_CHECKPOINT_FROM"
    exit 0
  fi
  # 404, or 403 without s3:ListBucket: the source run has not written it yet. Its index.json means it ended.
  if [ -n "${{SIMFLEET_SOURCE_INDEX:-}}" ] && aws s3 cp --only-show-errors "$SIMFLEET_SOURCE_INDEX" "${{TMPDIR:-/tmp}}/source-index.json" 2>/dev/null; then
    aws s3 cp --only-show-errors "$SIMFLEET_CHECKPOINT_FROM" {CHECKPOINT_IN} && exit 0
    echo "checkpoint-fetch: the source run ended without $SIMFLEET_CHECKPOINT_FROM: $(cat "${{TMPDIR:-/tmp}}/source-index.json")" >&2
    exit 1
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "checkpoint-fetch: gave up on $SIMFLEET_CHECKPOINT_FROM after $SIMFLEET_FETCH_WAIT_SECONDS s" >&2
    exit 1
  fi
  echo "checkpoint-fetch: waiting for $SIMFLEET_CHECKPOINT_FROM"
  sleep "$SIMFLEET_FETCH_POLL_SECONDS"
done
"""

# The done marker is written even when glue fails, so the uploader still ships logs and a Failed index.json.
GLUE_SCRIPT = f"""python "$SIMFLEET_GLUE_FILE"
code=$?
echo "$code" > {DONE_MARKER}.tmp && mv {DONE_MARKER}.tmp {DONE_MARKER}
exit "$code"
"""

# `aws s3 cp` cannot tag objects (aws/aws-cli#2458), so artifacts go up with s3api put-object --tagging, and
# files over the 5 GB single-PUT limit with a multipart cp followed by put-object-tagging.
UPLOAD_SCRIPT = rf"""set -uo pipefail
shopt -s globstar nullglob dotglob
if [ "$SIMFLEET_PER_SEED" = true ]; then
  seed=$(jq -r ".[${{JOB_COMPLETION_INDEX}}]" <<<"$SIMFLEET_SEEDS")
  prefix="${{SIMFLEET_PREFIX}}seed-${{seed}}/"
else
  seed=$(jq -r '.[0]' <<<"$SIMFLEET_SEEDS")
  prefix="$SIMFLEET_PREFIX"
fi
deadline=$(( $(date +%s) + SIMFLEET_UPLOAD_WAIT_SECONDS ))
until [ -f {DONE_MARKER} ]; do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "artifact-uploader: glue did not finish in time; uploading what exists" >&2
    break
  fi
  sleep 5
done
glue_exit=$(cat {DONE_MARKER} 2>/dev/null || echo none)
failed=0
for entry in {ARTIFACTS_DIR}/*; do
  case "${{entry##*/}}" in
    {"|".join(ARTIFACT_KINDS)}) ;;
    *) echo "artifact-uploader: skipping $entry (only {", ".join(k + "/" for k in ARTIFACT_KINDS)} are uploaded)" >&2 ;;
  esac
done
for kind in {" ".join(ARTIFACT_KINDS)}; do
  for file in "{ARTIFACTS_DIR}/$kind"/**; do
    [ -f "$file" ] || continue
    key="${{prefix}}${{kind}}/${{file#{ARTIFACTS_DIR}/$kind/}}"
    if [ "$(stat -c %s "$file")" -lt 5000000000 ]; then
      aws s3api put-object --bucket "$SIMFLEET_ARTIFACTS_BUCKET" --key "$key" --body "$file" \
        --tagging "$SIMFLEET_KIND_TAG=$kind" > /dev/null || {{ echo "artifact-uploader: failed $file" >&2; failed=1; }}
    else
      aws s3 cp --only-show-errors "$file" "s3://$SIMFLEET_ARTIFACTS_BUCKET/$key" \
        && aws s3api put-object-tagging --bucket "$SIMFLEET_ARTIFACTS_BUCKET" --key "$key" \
             --tagging "TagSet=[{{Key=$SIMFLEET_KIND_TAG,Value=$kind}}]" \
        || {{ echo "artifact-uploader: failed $file" >&2; failed=1; }}
    fi
  done
done
checkpoint=""
if [ "$SIMFLEET_SAVE_CHECKPOINT" = true ]; then
  if [ -f {CHECKPOINT_OUT} ]; then
    uri="s3://$SIMFLEET_CHECKPOINTS_BUCKET/${{prefix}}out.mstate"
    if aws s3 cp --only-show-errors {CHECKPOINT_OUT} "$uri"; then checkpoint="$uri"; else failed=1; fi
  else
    echo "artifact-uploader: checkpoint.save is set but {CHECKPOINT_OUT} was not written" >&2
    failed=1
  fi
fi
status=Failed
if [ "$glue_exit" = 0 ] && [ "$failed" = 0 ]; then status=Succeeded; fi
started=$(cat {STARTED_MARKER} 2>/dev/null || true)
index="${{TMPDIR:-/tmp}}/index.json"
jq -n --arg run "$SIMFLEET_RUN" --arg hash "$SIMFLEET_SPEC_HASH" --argjson seed "$seed" --arg status "$status" \
  --arg started "$started" --arg completed "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg checkpoint "$checkpoint" \
  '{{run: $run, specHash: $hash, seed: $seed, status: $status,
    startTime: (if $started == "" then null else $started end), completionTime: $completed,
    checkpoint: (if $checkpoint == "" then null else $checkpoint end)}}' > "$index" || exit 1
# Written last: its presence tells the provider and waiting runs that this seed has ended.
aws s3api put-object --bucket "$SIMFLEET_ARTIFACTS_BUCKET" --key "${{prefix}}index.json" --body "$index" \
  --content-type application/json > /dev/null || failed=1
echo "artifact-uploader: $status ($prefix)"
exit "$failed"
"""
