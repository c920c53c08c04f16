"""Pure rendering of one run: spec + context + identity -> the Kubernetes objects the provider applies, in order.

Nothing here touches Pulumi, AWS or a cluster, so the offline plan, the policies, the tests and the dynamic
provider (which renders at create time from the SimRun's small inputs) all see exactly the objects applied.
The identity (hash, S3 locations) lives in workloads/identity.py and the time budget in workloads/budget.py;
nothing rendered here moves a hash.

The pod (docs/researchers/runs.md, "What `pulumi up` makes of a run"):
- init `checkpoint-fetch` (fetch.sh): the attempt marker, then the brain the run starts from: the latest partial
  checkpoint of this seed when resuming, else `checkpoint.from`, else none;
- native sidecars `unitree-sim` and `monty` (initContainers with restartPolicy Always and a startup probe on
  their /healthz port): glue starts only once both are up, and the kubelet stops them after the main containers;
- main `glue` runs simfleet's runtime (`python -m glue_runtime`) around the user's step(): bridge, liveness, checks,
  periodic and final checkpoints, the finish handshake, the heartbeat and the done marker;
- main `artifact-uploader` (upload.sh) ships partial checkpoints while glue runs, then, after the done marker,
  the artifacts, the checkpoint and index.json last.
Every Job is created suspended and labelled with its Kueue queue, which admits it. A `run:<name>` continuation
whose source has not finished gets no queue label yet, and a small CPU-only gate Job that adds it once the
source's index.json says Succeeded, so no GPU (and no queue quota) waits for the source.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import naming
import versions
from config import RunSpec, quantity_value
from workloads import budget as timing
from workloads import contract
from workloads.identity import RunContext, RunIdentity, SourceRef, glue_config_map_name, resolved_images, run_prefix
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
    small_resources,
    workload_labels,
    workload_metadata,
)

# Native sidecars (initContainers with restartPolicy Always) and per-index Job backoff are GA from 1.33.
MIN_KUBERNETES_VERSION = (1, 33)

# Mount points and files shared between containers.
GLUE_DIR = "/glue"  # the shared glue ConfigMap
CHECKPOINTS_DIR = "/checkpoints"
ARTIFACTS_DIR = "/artifacts"
CHECKPOINT_IN = f"{CHECKPOINTS_DIR}/in.mstate"
CHECKPOINT_OUT = f"{CHECKPOINTS_DIR}/out.mstate"
DONE_MARKER = f"{CHECKPOINTS_DIR}/.done"
HEARTBEAT_FILE = f"{CHECKPOINTS_DIR}/.heartbeat"

# The bridge's ZeroMQ endpoints inside the pod (localhost only; nothing is exposed).
OBS_ENDPOINT = "tcp://127.0.0.1:5555"  # unitree-sim PUB -> glue SUB
ACTION_ENDPOINT = "tcp://127.0.0.1:5556"  # glue PUSH -> unitree-sim PULL
MONTY_ENDPOINT = "tcp://127.0.0.1:5557"  # glue REQ <-> monty REP
SIM_CONTROL_ENDPOINT = "tcp://127.0.0.1:5558"  # glue REQ <-> unitree-sim REP (finish)

SCRIPTS = ("common.sh", "term.sh", "fetch.sh", "upload.sh", "gate.sh")  # common.sh (and its term.sh): sourced by the others
FETCH_RETRY_SECONDS = 120  # an s3:// checkpoint.from gets this long to appear (transient errors, eventual IAM)
FETCH_POLL_SECONDS = 30
PARTIAL_POLL_SECONDS = 30  # how often the uploader looks for a newer partial checkpoint
GATE_POLL_SECONDS = 30
# How long a gate waits for its source: 15 minutes (its uploads) past the source's own Job deadline, counted from
# the start of the source's latest pod (its attempt marker). The Job's clock starts only when Kueue admits it and
# restarts at every re-admission (a preemption), whose new pod restarts this one too. Before the source's first pod
# there is no such clock (queue time is unbounded), so the absolute cap: the longest a source may run (config
# MAX_RUNTIME_LIMIT) with its platform overhead, then twice that for queueing. The provider reports Blocked sooner
# when the source's own Job has failed (workloads/observe.py).
GATE_GRACE_SECONDS = 15 * 60
GATE_MAX_WAIT_SECONDS = 14 * 24 * 3600
GATE_BACKOFF_LIMIT = 3  # a drain of its node, a Kueue webhook briefly down for the label: try again
BACKOFF_LIMIT = 1  # one retry for a transient failure (an S3 hiccup); a buggy glue fails fast
# Share of the run's cpu/memory per container; the simulator renders and steps physics, so it gets most.
SHARES = {"unitree-sim": 0.6, "monty": 0.25, "glue": 0.1, "artifact-uploader": 0.05}
FETCH_RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "256Mi"}}

# The AWS Load Balancer Controller provisions an NLB for Services of this class (LBC docs, guide/service/nlb and
# guide/service/annotations).
NLB_CLASS = "service.k8s.aws/nlb"
NLB_ANNOTATIONS = {
    # LBC defaults to an internal NLB; the viewport is reached from the office, restricted by source ranges.
    "service.beta.kubernetes.io/aws-load-balancer-scheme": "internet-facing",
    # ip targets send traffic straight to the pod (VPC CNI), with no NodePort hop.
    "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip",
    # A UDP target group cannot be health-checked over UDP: both target groups check the simulator's TCP
    # signalling port, which it serves whenever the viewport is up.
    "service.beta.kubernetes.io/aws-load-balancer-healthcheck-protocol": "TCP",
    "service.beta.kubernetes.io/aws-load-balancer-healthcheck-port": str(naming.VIEWPORT_SIGNAL_PORT),
}
# Containers the IRSA webhook gives no credentials (IRSA_SKIP_ANNOTATION).
NO_AWS_CREDENTIALS = ("unitree-sim", "monty", "glue")
DEFAULT_TTL_SECONDS: int = RunSpec.model_fields["ttl_after_finished"].default


def budget_of(spec: RunSpec, seeds: int | None = None) -> timing.Budget:
    count = len(spec.seeds) if seeds is None else seeds
    return timing.Budget.of(spec.max_runtime, count, spec.parallel_pods)


def job_deadline(spec: RunSpec) -> int:
    """activeDeadlineSeconds of the run's Job for all its declared seeds."""
    return budget_of(spec).deadline_seconds


@functools.cache
def runtime_files() -> dict[str, str]:
    """What the runs' runtime ConfigMap carries (path under /opt/simfleet -> text): the glue runtime package, the pod
    scripts, the contract."""
    scripts = {name: (SCRIPTS_DIR / name).read_text() for name in SCRIPTS}
    return {**contract.contract_files(), **contract.runtime_files(), **scripts}


@functools.cache
def runtime() -> Runtime:
    """The runs' shared runtime ConfigMap's data (keys without `/`) and content hash: computed once per process."""
    return Runtime.of({configmap_key(path): text for path, text in runtime_files().items()})


def configmap_key(path: str) -> str:
    """ConfigMap keys cannot hold a `/`: glue_runtime/bridge.py is stored under glue_runtime.bridge.py."""
    return path.replace("/", ".")


@functools.cache
def _runtime_items() -> tuple[tuple[str, str], ...]:
    return tuple((configmap_key(path), path) for path in runtime_files())


def runtime_volume() -> dict[str, Any]:
    """The shared runtime ConfigMap as a volume; `items` puts each key back at its path (the runtime is a package)."""
    items = [{"key": key, "path": path} for key, path in _runtime_items()]
    return {"name": "runtime", "configMap": {"name": runtime().name, "items": items}}


def render_run(
    spec: RunSpec,
    ctx: RunContext,
    identity: RunIdentity,
    glue_config_map: str,
    source: SourceRef | None = None,
    seeds: tuple[int, ...] | None = None,
    gated: bool | None = None,
) -> list[dict[str, Any]]:
    """The run's objects in apply order: ConfigMap, viewport Service and NetworkPolicy, the Job, its gate Job.

    `seeds` narrows the Job to the seeds still to run (the provider leaves out seeds that already ran at this hash,
    after a lost state); the prefixes stay those of the declared seeds. `gated` (default: whenever the run
    continues from another run) creates the Job suspended with a gate Job that releases it; the provider passes
    False once the source's index.json already says Succeeded.
    """
    seeds = tuple(spec.seeds) if seeds is None else seeds
    gated = source is not None if gated is None else gated and source is not None
    budget = budget_of(spec, len(seeds))
    objects = [runtime_configmap(ctx.namespace)]
    if spec.viewport is not None:
        objects += [viewport_service(spec, ctx, identity.spec_hash), viewport_policy(spec, ctx, identity.spec_hash)]
    pod = _pod_template(spec, ctx, identity.spec_hash, glue_config_map, source, seeds, budget)
    objects.append(_job(spec, ctx, identity.spec_hash, pod, budget, seeds, gated=gated))
    if gated:
        assert source is not None
        objects += [*gate_access(spec, ctx, identity.spec_hash), gate_job(spec, ctx, identity.spec_hash, source)]
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


def run_labels(spec: RunSpec, component: str) -> dict[str, str]:
    own = {
        naming.RUN_LABEL: spec.name,
        "simfleet.io/profile": spec.profile.rstrip("-_."),  # label values must end alphanumeric
        "simfleet.io/mode": spec.mode,
    }
    labels = workload_labels("simfleet-run", spec.name, component, spec.labels, own)
    if len(spec.seeds) == 1:
        labels["simfleet.io/seed"] = str(spec.seeds[0])
    return labels


def _metadata(name: str, spec: RunSpec, ctx: RunContext, component: str, spec_hash: str) -> dict[str, Any]:
    return workload_metadata(name, ctx.namespace, run_labels(spec, component), spec_hash)


def gate_job_name(run: str) -> str:
    return f"{run}-gate"


def runtime_configmap(namespace: str) -> dict[str, Any]:
    """The runs' shared runtime ConfigMap: simfleet's runtime, scripts and contract, rendered from this code at create
    time. Every Job that mounts it owns it, so a Job created (or released) long after a simfleet upgrade still finds
    the files it was rendered with, and the last one to go takes it along."""
    return shared_runtime_configmap(namespace, runtime(), "run-runtime")


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
            # The NLB's security group admits only these (TCP); the NetworkPolicy below fences UDP at the pod.
            "loadBalancerSourceRanges": [str(cidr) for cidr in spec.viewport.allowed_cidrs],
            "selector": {naming.RUN_LABEL: spec.name, naming.VIEWPORT_POD_LABEL: "true"},
            "ports": [
                {"name": name, "port": port, "targetPort": port, "protocol": protocol}
                for name, port, protocol in naming.VIEWPORT_PORTS
            ],
        },
    }


def viewport_policy(spec: RunSpec, ctx: RunContext, spec_hash: str) -> dict[str, Any]:
    """Who reaches this run's viewport ports, and nothing else (the namespace denies all other ingress).

    With ip targets an NLB forwards TCP from its own private addresses (client IPs are not preserved for TCP by
    default) and health-checks from them too, so TCP is admitted from the VPC; UDP keeps the client's address, so
    the media port admits exactly `viewport.allowedCidrs`.
    """
    assert spec.viewport is not None
    if not ctx.vpc_cidr:
        raise ValueError(f"run {spec.name}: a viewport needs the VPC CIDR in the run context")
    tcp = [(port, protocol) for _, port, protocol in naming.VIEWPORT_PORTS if protocol == "TCP"]
    udp = [(port, protocol) for _, port, protocol in naming.VIEWPORT_PORTS if protocol == "UDP"]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(f"{spec.name}-viewport", spec, ctx, "viewport", spec_hash),
        "spec": {
            "podSelector": {"matchLabels": {naming.RUN_LABEL: spec.name, naming.VIEWPORT_POD_LABEL: "true"}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [{"ipBlock": {"cidr": ctx.vpc_cidr}}], "ports": [{"port": p, "protocol": pr} for p, pr in tcp]},
                {
                    "from": [{"ipBlock": {"cidr": str(cidr)}} for cidr in spec.viewport.allowed_cidrs],
                    "ports": [{"port": p, "protocol": pr} for p, pr in udp],
                },
            ],
        },
    }


def _job(
    spec: RunSpec,
    ctx: RunContext,
    spec_hash: str,
    pod: dict[str, Any],
    budget: timing.Budget,
    seeds: tuple[int, ...],
    gated: bool,
) -> dict[str, Any]:
    job: dict[str, Any] = {
        "activeDeadlineSeconds": budget.deadline_seconds,
        "ttlSecondsAfterFinished": spec.ttl_after_finished,
        # A spot reclaim or node drain marks the pod DisruptionTarget; it is retried without using up a retry.
        "podFailurePolicy": {
            "rules": [
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            ]
        },
        # The only value podFailurePolicy allows (and its default); it keeps two pods of one seed from writing the
        # same prefix at once: a replacement starts only once the failed pod has fully terminated.
        "podReplacementPolicy": "Failed",
        "template": pod,
    }
    # Created suspended: Kueue admits it (unsuspends it) when its queue has room. A continuation whose source has
    # not succeeded also has no queue label yet, so Kueue leaves it alone until its gate Job adds the label.
    job["suspend"] = True
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
    metadata = _metadata(spec.name, spec, ctx, "simulation", spec_hash)
    queue = None if gated else run_queue(spec, ctx)
    metadata["labels"].update(queue_labels(queue, naming.PRIORITY_FOR_MODE[spec.mode]))
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": job}


def run_queue(spec: RunSpec, ctx: RunContext) -> str:
    """The LocalQueue that admits the run: its own `queue`, else the stack's default."""
    return spec.queue or ctx.default_queue


def _pod_template(
    spec: RunSpec,
    ctx: RunContext,
    spec_hash: str,
    glue_config_map: str,
    source: SourceRef | None,
    seeds: tuple[int, ...],
    budget: timing.Budget,
) -> dict[str, Any]:
    metadata = _metadata(spec.name, spec, ctx, "simulation", spec_hash)
    del metadata["name"], metadata["namespace"]  # the Job controller names its pods
    if spec.viewport is not None:
        metadata["labels"][naming.VIEWPORT_POD_LABEL] = "true"
    metadata["annotations"].update(
        {
            IRSA_SKIP_ANNOTATION: ",".join(NO_AWS_CREDENTIALS),
            # Losing the node mid-run wastes the run; scale-down waits for the pod to finish.
            "cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
        }
    )
    images = resolved_images(spec, ctx.registry_url)
    base = _base_env(spec, ctx, spec_hash, seeds)
    resources = _resources(spec)
    init = [
        _checkpoint_fetch(spec, base, source),
        _sim(spec, images["sim"], base, resources["unitree-sim"]),
        _monty(images["monty"], base, resources["monty"]),
    ]
    main = [_glue(spec, images["glue"], base, resources["glue"]), _uploader(spec, base, resources["artifact-uploader"], budget)]
    datasets = [_mount_datasets(spec.datasets.path, [init[1], init[2], main[0]])] if spec.datasets is not None else []
    if ctx.pushgateway_url:
        _push_metrics(ctx.pushgateway_url, *main)
    return {
        "metadata": metadata,
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": ctx.service_account,
            # No container talks to the Kubernetes API; IRSA mounts its own projected token.
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            # The spot notice: glue saves a partial checkpoint, the uploader ships and writes index.json within it
            # (workloads/budget.py; measured in tests/test_faults_run.py).
            "terminationGracePeriodSeconds": budget.grace_seconds,
            "securityContext": pod_security(),
            "nodeSelector": _node_selector(spec),
            "tolerations": [gpu_toleration()],
            "initContainers": init,
            "containers": main,
            "volumes": [
                runtime_volume(),
                {"name": "glue", "configMap": {"name": glue_config_map}},
                {"name": "checkpoints", "emptyDir": {}},
                {"name": "artifacts", "emptyDir": {}},
                {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": _shm_size(spec)}},
                *datasets,
                *scratch_volumes([*init, *main]),
            ],
        },
    }


def _mount_datasets(path: str, containers: list[dict[str, Any]]) -> dict[str, Any]:
    """The shared datasets claim, read-only, in the containers that run user code (simulator, brain, glue); config
    allows `datasets` only with shared storage on, so the claim exists."""
    for body in containers:
        body["volumeMounts"].append({"name": "datasets", "mountPath": path, "readOnly": True})
        body["env"].append(env("SIMFLEET_DATASETS_DIR", path))
    return {"name": "datasets", "persistentVolumeClaim": {"claimName": naming.DATASETS_CLAIM, "readOnly": True}}


def _push_metrics(url: str, glue: dict[str, Any], uploader: dict[str, Any]) -> None:
    """The Pushgateway's address for the two containers that use it: glue pushes the seed's gauges
    (glue_runtime/metrics.py), the uploader deletes their group when the seed ends (upload.sh). No other container gets
    it, and nothing hashed does: metrics on or off never reruns a run."""
    glue["env"] += [
        env("SIMFLEET_PUSHGATEWAY_URL", url),
        env("SIMFLEET_METRICS_PUSH_SECONDS", str(timing.METRICS_PUSH_SECONDS)),
        env("SIMFLEET_METRICS_TIMEOUT_SECONDS", str(timing.METRICS_PUSH_TIMEOUT_SECONDS)),
    ]
    uploader["env"] += [
        env("SIMFLEET_PUSHGATEWAY_URL", url),
        env("SIMFLEET_METRICS_LINGER_SECONDS", str(timing.METRICS_LINGER_SECONDS)),
        env("SIMFLEET_TERM_METRICS_SECONDS", str(timing.TERM_METRICS_SECONDS)),
    ]


def _node_selector(spec: RunSpec) -> dict[str, str]:
    """GPU nodes; interactive runs pin on-demand. A batch run names no capacity type: Kueue's spot flavor comes first
    and its on-demand flavor second, and the admitted flavor adds its own capacity-type selector to the pods. (A
    pod that pinned spot could never be given the on-demand flavor.)"""
    selector = {naming.NODE_POOL_LABEL: "gpu"}
    if spec.mode == "interactive":
        selector[naming.CAPACITY_TYPE_LABEL] = naming.EKS_CAPACITY["onDemand"]
    return selector


def _liveness_probe(port: int) -> dict[str, Any]:
    # A sidecar that stops answering /healthz is restarted (native sidecars restart whatever the pod's policy); glue
    # sees the restart (a new incarnation, a dropped connection) and ends the attempt naming it, rather than waiting.
    return {
        "httpGet": {"path": naming.HEALTH_PATH, "port": port},
        "periodSeconds": timing.SIDECAR_PROBE_PERIOD_SECONDS,
        "timeoutSeconds": 5,
        "failureThreshold": timing.SIDECAR_LIVENESS_SECONDS // timing.SIDECAR_PROBE_PERIOD_SECONDS,
    }


def _glue_liveness_probe() -> dict[str, Any]:
    # Glue's runtime rewrites its heartbeat every second from its own waits (and its step guard while a step() is
    # within its time). A heartbeat this old means glue is wedged beyond its own bounds (a C call that ignores
    # signals): the kubelet ends it, the uploader has already reported it, and the pod ends instead of holding the GPU
    # until the Job's deadline. A main container is not restarted (restartPolicy Never).
    age = f"time.time() - os.stat({HEARTBEAT_FILE!r}).st_mtime"
    return {
        "exec": {"command": ["python", "-I", "-c", f"import os, sys, time; sys.exit({age} > {timing.GLUE_LIVENESS_SECONDS})"]},
        "initialDelaySeconds": 30,
        "periodSeconds": 30,
        "timeoutSeconds": 10,
        "failureThreshold": 2,
    }


def _startup_probe(port: int) -> dict[str, Any]:
    # Native sidecars: the kubelet starts the next container only once this passes, so glue never talks to a
    # simulator or brain that is not up. Isaac Sim boots in minutes; the window is budget.SIDECAR_STARTUP_SECONDS.
    return {
        "httpGet": {"path": naming.HEALTH_PATH, "port": port},
        "periodSeconds": timing.SIDECAR_PROBE_PERIOD_SECONDS,
        "timeoutSeconds": 5,
        "failureThreshold": timing.SIDECAR_STARTUP_SECONDS // timing.SIDECAR_PROBE_PERIOD_SECONDS,
    }


def _checkpoint_fetch(spec: RunSpec, base: list[dict[str, Any]], source: SourceRef | None) -> dict[str, Any]:
    extra = [
        env("SIMFLEET_CHECKPOINTS_DIR", CHECKPOINTS_DIR),
        env("SIMFLEET_RESUME", str(spec.checkpoint.every is not None).lower()),
        env("SIMFLEET_FETCH_WAIT_SECONDS", str(FETCH_RETRY_SECONDS)),
        env("SIMFLEET_FETCH_POLL_SECONDS", str(FETCH_POLL_SECONDS)),
    ]
    if source is not None:
        extra += [env("SIMFLEET_CHECKPOINT_FROM", source.checkpoint_uri), env("SIMFLEET_SOURCE_INDEX", source.index_uri)]
    elif spec.checkpoint.from_:
        extra.append(env("SIMFLEET_CHECKPOINT_FROM", spec.checkpoint.from_))
    return container(
        "checkpoint-fetch",
        versions.AWS_CLI_IMAGE,
        [*base, *extra],
        {"runtime": RUNTIME_DIR, "checkpoints": CHECKPOINTS_DIR},
        FETCH_RESOURCES,
        read_only=("runtime",),
        read_only_root=True,
        # bash is PID 1 of the container: the script's guardian (term.sh guard_term) traps TERM.
        command=["/bin/bash", f"{RUNTIME_DIR}/fetch.sh"],
    )


def _sim(spec: RunSpec, image: str, base: list[dict[str, Any]], resources: dict[str, Any]) -> dict[str, Any]:
    extra = [
        env("SIMFLEET_OBS_ENDPOINT", OBS_ENDPOINT),
        env("SIMFLEET_ACTION_ENDPOINT", ACTION_ENDPOINT),
        env("SIMFLEET_SIM_CONTROL_ENDPOINT", SIM_CONTROL_ENDPOINT),
        env("SIMFLEET_HEALTH_PORT", str(naming.SIM_HEALTH_PORT)),
        env("SIMFLEET_ARTIFACTS_DIR", ARTIFACTS_DIR),
        env("SIMFLEET_VIEWPORT", str(spec.viewport is not None).lower()),
    ]
    ports = [{"name": "health", "containerPort": naming.SIM_HEALTH_PORT, "protocol": "TCP"}]
    if spec.viewport is not None:
        ports += [{"name": name, "containerPort": port, "protocol": protocol} for name, port, protocol in naming.VIEWPORT_PORTS]
    # restartPolicy Always on an init container makes it a native sidecar. A third-party image: its root
    # filesystem stays writable (Isaac Sim writes caches under its home).
    return container(
        "unitree-sim",
        image,
        [*base, *extra],
        {"artifacts": ARTIFACTS_DIR, "dshm": "/dev/shm"},
        resources,
        restartPolicy="Always",
        startupProbe=_startup_probe(naming.SIM_HEALTH_PORT),
        livenessProbe=_liveness_probe(naming.SIM_HEALTH_PORT),
        ports=ports,
    )


def _monty(image: str, base: list[dict[str, Any]], resources: dict[str, Any]) -> dict[str, Any]:
    # Monty loads /checkpoints/in.mstate when checkpoint-fetch wrote one, else starts a fresh brain with the
    # profile (SIMFLEET_PROFILE), and saves to the path glue asks for.
    extra = [
        env("SIMFLEET_MONTY_ENDPOINT", MONTY_ENDPOINT),
        env("SIMFLEET_HEALTH_PORT", str(naming.MONTY_HEALTH_PORT)),
        env("SIMFLEET_CHECKPOINT_IN", CHECKPOINT_IN),
        env("SIMFLEET_ARTIFACTS_DIR", ARTIFACTS_DIR),
    ]
    return container(
        "monty",
        image,
        [*base, *extra],
        {"checkpoints": CHECKPOINTS_DIR, "artifacts": ARTIFACTS_DIR, "dshm": "/dev/shm"},
        resources,
        restartPolicy="Always",
        startupProbe=_startup_probe(naming.MONTY_HEALTH_PORT),
        livenessProbe=_liveness_probe(naming.MONTY_HEALTH_PORT),
        ports=[{"name": "health", "containerPort": naming.MONTY_HEALTH_PORT, "protocol": "TCP"}],
    )


def _glue(spec: RunSpec, image: str, base: list[dict[str, Any]], resources: dict[str, Any]) -> dict[str, Any]:
    every = spec.checkpoint.every or 0
    extra = [
        env("SIMFLEET_CONTRACT_DIR", RUNTIME_DIR),
        env("SIMFLEET_OBS_ENDPOINT", OBS_ENDPOINT),
        env("SIMFLEET_ACTION_ENDPOINT", ACTION_ENDPOINT),
        env("SIMFLEET_MONTY_ENDPOINT", MONTY_ENDPOINT),
        env("SIMFLEET_SIM_CONTROL_ENDPOINT", SIM_CONTROL_ENDPOINT),
        env("SIMFLEET_CHECKPOINTS_DIR", CHECKPOINTS_DIR),
        env("SIMFLEET_ARTIFACTS_DIR", ARTIFACTS_DIR),
        env("SIMFLEET_CHECKPOINT_OUT", CHECKPOINT_OUT),
        env("SIMFLEET_DONE_MARKER", DONE_MARKER),
        env("SIMFLEET_HEARTBEAT_FILE", HEARTBEAT_FILE),
        env("SIMFLEET_HEARTBEAT_SECONDS", str(timing.HEARTBEAT_SECONDS)),
        env("SIMFLEET_SAVE_CHECKPOINT", str(spec.checkpoint.save).lower()),
        env("SIMFLEET_CHECKPOINT_EVERY_SECONDS", str(every)),
        # Simulation time of this seed; a resumed pod runs only what is left (resume.json).
        env("SIMFLEET_STOP_AFTER_SECONDS", str(spec.max_runtime)),
        env("SIMFLEET_STARTUP_TIMEOUT_SECONDS", str(timing.FIRST_OBSERVATION_SECONDS)),
        env("SIMFLEET_OBSERVATION_TIMEOUT_SECONDS", str(spec.timeouts.observation)),
        env("SIMFLEET_STEP_TIMEOUT_SECONDS", str(spec.timeouts.step)),
        env("SIMFLEET_BRAIN_SILENCE_SECONDS", str(spec.timeouts.brain)),
        env("SIMFLEET_FINISH_TIMEOUT_SECONDS", str(timing.FINISH_SECONDS)),
        env("SIMFLEET_SAVE_TIMEOUT_SECONDS", str(timing.SAVE_SECONDS)),
        env("SIMFLEET_TERM_SAVE_SECONDS", str(timing.TERM_SAVE_SECONDS)),
        env("PYTHONUNBUFFERED", "1"),
        env("PYTHONDONTWRITEBYTECODE", "1"),
        env("PYTHONPATH", RUNTIME_DIR),
    ]
    return container(
        "glue",
        image,
        [*base, *extra],
        {"runtime": RUNTIME_DIR, "glue": GLUE_DIR, "checkpoints": CHECKPOINTS_DIR, "artifacts": ARTIFACTS_DIR},
        resources,
        read_only=("runtime", "glue"),
        read_only_root=True,
        livenessProbe=_glue_liveness_probe(),
        # python is PID 1 of the container; the runtime installs its own SIGTERM handler (it saves, then exits 143).
        # -P: the image's working directory is not put on sys.path, so only PYTHONPATH finds the runtime package.
        command=["python", "-P", "-m", contract.RUNTIME_MODULE, f"{GLUE_DIR}/{contract.GLUE_FILE}"],
    )


def _uploader(spec: RunSpec, base: list[dict[str, Any]], resources: dict[str, Any], budget: timing.Budget) -> dict[str, Any]:
    extra = [
        env("SIMFLEET_CHECKPOINTS_DIR", CHECKPOINTS_DIR),
        env("SIMFLEET_ARTIFACTS_DIR", ARTIFACTS_DIR),
        env("SIMFLEET_DONE_MARKER", DONE_MARKER),
        env("SIMFLEET_SAVE_CHECKPOINT", str(spec.checkpoint.save).lower()),
        env("SIMFLEET_CHECKPOINT_EVERY_SECONDS", str(spec.checkpoint.every or 0)),
        env("SIMFLEET_PARTIAL_POLL_SECONDS", str(PARTIAL_POLL_SECONDS)),
        # No wait on a clock: glue's heartbeat says it is alive, however slow the simulation (workloads/budget.py).
        env("SIMFLEET_HEARTBEAT_FILE", HEARTBEAT_FILE),
        env("SIMFLEET_HEARTBEAT_TIMEOUT_SECONDS", str(timing.HEARTBEAT_TIMEOUT_SECONDS)),
        env("SIMFLEET_START_WAIT_SECONDS", str(timing.STARTUP_SECONDS)),
        env("SIMFLEET_PROGRESS_SECONDS", str(timing.PROGRESS_SECONDS)),
        # After SIGTERM, within the spot notice.
        env("SIMFLEET_TERM_WAIT_SECONDS", str(budget.term_wait_seconds)),
        env("SIMFLEET_TERM_SHIP_SECONDS", str(timing.TERM_SHIP_SECONDS)),
        env("SIMFLEET_TERM_INDEX_SECONDS", str(timing.TERM_INDEX_SECONDS)),
        env("SIMFLEET_KIND_TAG", naming.ARTIFACT_KIND_TAG),
    ]
    return container(
        "artifact-uploader",
        versions.AWS_CLI_IMAGE,
        [*base, *extra],
        {"runtime": RUNTIME_DIR, "artifacts": ARTIFACTS_DIR, "checkpoints": CHECKPOINTS_DIR},
        resources,
        read_only=("runtime", "artifacts", "checkpoints"),
        read_only_root=True,
        command=["/bin/bash", f"{RUNTIME_DIR}/upload.sh"],
    )


def gate_job(spec: RunSpec, ctx: RunContext, spec_hash: str, source: SourceRef) -> dict[str, Any]:
    """A CPU-only Job that releases the suspended continuation once its source run succeeded.

    Its init container (gate.sh, AWS CLI image, the shared gate role through IRSA) waits for the source's index.json
    to say Succeeded; a failed attempt of the source may still be retried, so it keeps waiting until GATE_GRACE_SECONDS
    past the source's own deadline (from the source's latest pod), or GATE_MAX_WAIT_SECONDS in all. Its main container
    (kubectl) then labels the run's Job with its queue, which hands it to Kueue (admitted, so unsuspended, when the
    queue has room). The release acts as this run's own gate ServiceAccount (gate_access: get and patch of this one
    Job), and its JSON patch first tests the Job's spec-hash annotation, so a gate left over from an earlier spec can
    never release a successor with another hash. The gate itself is not queued: a CPU-only pod on the system nodes, it
    must run while the queue holds the run. The run's Job owns it (the provider sets the owner), so deleting the run
    deletes the gate; the provider reports the run Blocked as soon as the source's Job has failed for good.
    """
    if not ctx.kubernetes_version:
        raise ValueError(f"run {spec.name}: the gate's kubectl is pinned per Kubernetes minor; the context has none")
    deadline = GATE_MAX_WAIT_SECONDS
    name = gate_job_name(spec.name)
    metadata = _metadata(name, spec, ctx, "gate", spec_hash)
    wait = container(
        "wait-for-source",
        versions.AWS_CLI_IMAGE,
        [
            env("SIMFLEET_RUN", spec.name),
            env("SIMFLEET_SOURCE_INDEX", source.index_uri),
            env("SIMFLEET_SOURCE_DEADLINE_SECONDS", str(source.deadline_seconds)),
            env("SIMFLEET_GATE_GRACE_SECONDS", str(GATE_GRACE_SECONDS)),
            env("SIMFLEET_GATE_DEADLINE_SECONDS", str(deadline)),
            env("SIMFLEET_GATE_POLL_SECONDS", str(GATE_POLL_SECONDS)),
            env("AWS_REGION", ctx.region),
            env("AWS_DEFAULT_REGION", ctx.region),
        ],
        {"runtime": RUNTIME_DIR},
        small_resources(),
        read_only=("runtime",),
        read_only_root=True,
        command=["/bin/bash", f"{RUNTIME_DIR}/gate.sh"],
    )
    release = container(
        "release",
        versions.kubectl_image(ctx.kubernetes_version),
        [],
        {"gate-token": SERVICE_ACCOUNT_DIR},
        small_resources(),
        read_only=("gate-token",),
        read_only_root=True,
        # The image is shell-free; its binary is /bin/kubectl. In-cluster config from the token mounted where kubectl
        # looks for one. `add` of an existing label replaces it, so a retried gate still succeeds.
        command=release_command(spec, ctx, spec_hash),
    )
    # Only the wait reads S3; kubectl gets no AWS credentials.
    pod_metadata = {
        "labels": dict(metadata["labels"]),
        "annotations": {**metadata["annotations"], IRSA_SKIP_ANNOTATION: "release"},
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "activeDeadlineSeconds": deadline,
            # gate.sh retries S3 itself; a retried gate waits again and patches again (idempotent), so retries are safe.
            "backoffLimit": GATE_BACKOFF_LIMIT,
            "podFailurePolicy": {
                "rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]
            },
            "template": {
                "metadata": pod_metadata,
                "spec": {
                    "restartPolicy": "Never",
                    # The shared gate ServiceAccount carries the IRSA role that reads run records; its own API token
                    # is not mounted: the release uses this run's gate token instead.
                    "serviceAccountName": naming.GATE_SERVICE_ACCOUNT,
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod_security(),
                    "nodeSelector": {naming.NODE_POOL_LABEL: "system"},
                    "initContainers": [wait],
                    "containers": [release],
                    "volumes": [
                        runtime_volume(),
                        {"name": "gate-token", "secret": {"secretName": gate_token_name(spec.name)}},
                        *scratch_volumes([wait, release]),
                    ],
                },
            },
        },
    }


# Where kubectl's in-cluster config reads its token, CA and namespace (client-go rest.InClusterConfig).
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def gate_token_name(run: str) -> str:
    return f"{gate_job_name(run)}-token"


def release_command(spec: RunSpec, ctx: RunContext, spec_hash: str) -> list[str]:
    """kubectl patch of the run's Job: test that it is this spec's (hash annotation), then add its queue label."""

    def pointer(key: str) -> str:  # RFC 6901
        return key.replace("~", "~0").replace("/", "~1")

    patch = [
        {"op": "test", "path": f"/metadata/annotations/{pointer(naming.SPEC_HASH_ANNOTATION)}", "value": spec_hash},
        {"op": "add", "path": f"/metadata/labels/{pointer(naming.KUEUE_QUEUE_LABEL)}", "value": run_queue(spec, ctx)},
    ]
    text = json.dumps(patch, separators=(",", ":"))
    return ["/bin/kubectl", "patch", "job", spec.name, "--namespace", ctx.namespace, "--type=json", "-p", text]


def gate_access(spec: RunSpec, ctx: RunContext, spec_hash: str) -> list[dict[str, Any]]:
    """Who the gate's release acts as: this run's own ServiceAccount `<run>-gate`, allowed to get and patch this run's
    Job and nothing else (RBAC resourceNames), and the token Secret the release container mounts. Owned by the run's
    Job like every companion, so they go with it."""
    name = gate_job_name(spec.name)
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(name, spec, ctx, "gate", spec_hash),
        "automountServiceAccountToken": False,
    }
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _metadata(name, spec, ctx, "gate", spec_hash),
        "rules": [{"apiGroups": ["batch"], "resources": ["jobs"], "resourceNames": [spec.name], "verbs": ["get", "patch"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _metadata(name, spec, ctx, "gate", spec_hash),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ctx.namespace}],
    }
    token = _metadata(gate_token_name(spec.name), spec, ctx, "gate", spec_hash)
    # The token controller fills a Secret of this type with the named ServiceAccount's token, CA and namespace.
    token["annotations"]["kubernetes.io/service-account.name"] = name
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": token, "type": "kubernetes.io/service-account-token"}
    return [account, role, binding, secret]


def _base_env(spec: RunSpec, ctx: RunContext, spec_hash: str, seeds: tuple[int, ...]) -> list[dict[str, Any]]:
    """Env every run container gets. Several seeds: the seed is SIMFLEET_SEEDS[JOB_COMPLETION_INDEX].

    SIMFLEET_SEEDS lists the seeds this Job runs (all of them, or those left after a lost state); whether keys
    get a seed-<n>/ level follows the declared seeds, so a recreated Job writes where the first one did.
    """
    prefix = run_prefix(spec.name, spec_hash)
    variables = [
        env("SIMFLEET_RUN", spec.name),
        env("SIMFLEET_SPEC_HASH", spec_hash),
        env("SIMFLEET_MODE", spec.mode),
        env("SIMFLEET_PROFILE", spec.profile),
        env("SIMFLEET_SEEDS", json.dumps(list(seeds), separators=(",", ":"))),
        env("SIMFLEET_PER_SEED", str(len(spec.seeds) > 1).lower()),
    ]
    if len(spec.seeds) == 1:
        variables.append(env("SIMFLEET_SEED", str(spec.seeds[0])))
    variables += [
        env("SIMFLEET_ARTIFACTS_BUCKET", ctx.artifacts_bucket),
        env("SIMFLEET_CHECKPOINTS_BUCKET", ctx.checkpoints_bucket),
        env("SIMFLEET_PREFIX", prefix),
        env("SIMFLEET_ARTIFACTS_URI", f"s3://{ctx.artifacts_bucket}/{prefix}"),
        env("SIMFLEET_CHECKPOINTS_URI", f"s3://{ctx.checkpoints_bucket}/{prefix}"),
        # IMDS is closed to pods, so the SDKs cannot discover the region themselves.
        env("AWS_REGION", ctx.region),
        env("AWS_DEFAULT_REGION", ctx.region),
    ]
    return variables


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
